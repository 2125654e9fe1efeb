"""A small English + Persian corpus bundled with dlkit, for training the builtin tokenizers offline.

Sentences are built from templates over a few hundred common words in each language, so every
builtin tokenizer sees the characters and frequent words of both scripts (including the zero-width
non-joiner used in Persian verbs such as "می‌خوانم").
"""

from __future__ import annotations

import itertools
import random

ENGLISH_SUBJECTS = [
    "I",
    "you",
    "we",
    "they",
    "the student",
    "the teacher",
    "my friend",
    "the model",
    "the city",
    "the machine",
    "the reader",
    "our team",
    "the doctor",
    "the child",
    "the writer",
]
ENGLISH_VERBS = [
    "reads",
    "writes",
    "answers",
    "translates",
    "explains",
    "learns",
    "builds",
    "likes",
    "finds",
    "opens",
    "describes",
    "remembers",
    "counts",
    "draws",
    "carries",
]
ENGLISH_OBJECTS = [
    "a long book",
    "the question",
    "a short letter",
    "the red door",
    "a blue circle",
    "the old map",
    "an easy answer",
    "the new language",
    "the small house",
    "a green square",
    "the river",
    "the data",
    "a simple story",
    "the morning news",
    "the capital of the country",
]
ENGLISH_TAILS = [
    "every day",
    "in the morning",
    "at night",
    "with care",
    "very quickly",
    "again",
    "today",
    "in the library",
    "near the sea",
    "before dinner",
    "after the lesson",
    "in Tehran",
    "in London",
]

PERSIAN_SUBJECTS = [
    "من",
    "تو",
    "ما",
    "آنها",
    "دانشجو",
    "معلم",
    "دوست من",
    "مدل",
    "شهر",
    "ماشین",
    "خواننده",
    "گروه ما",
    "پزشک",
    "کودک",
    "نویسنده",
]
PERSIAN_OBJECTS = [
    "یک کتاب بلند را",
    "پرسش را",
    "یک نامه کوتاه را",
    "در قرمز را",
    "یک دایره آبی را",
    "نقشه قدیمی را",
    "پاسخ ساده را",
    "زبان تازه را",
    "خانه کوچک را",
    "یک مربع سبز را",
    "رودخانه را",
    "داده‌ها را",
    "یک داستان ساده را",
    "خبرهای صبح را",
    "پایتخت کشور را",
]
PERSIAN_VERBS = [
    "می‌خواند",
    "می‌نویسد",
    "پاسخ می‌دهد",
    "ترجمه می‌کند",
    "توضیح می‌دهد",
    "یاد می‌گیرد",
    "می‌سازد",
    "دوست دارد",
    "پیدا می‌کند",
    "باز می‌کند",
    "شرح می‌دهد",
    "به یاد می‌آورد",
    "می‌شمارد",
    "می‌کشد",
    "می‌برد",
]
PERSIAN_TAILS = [
    "هر روز",
    "در صبح",
    "در شب",
    "با دقت",
    "خیلی سریع",
    "دوباره",
    "امروز",
    "در کتابخانه",
    "کنار دریا",
    "پیش از شام",
    "پس از درس",
    "در تهران",
    "در اصفهان",
]

FACTS = [
    ("The capital of Iran is Tehran.", "پایتخت ایران تهران است."),
    ("The sky is blue and the grass is green.", "آسمان آبی است و چمن سبز است."),
    ("Water boils at one hundred degrees.", "آب در صد درجه می‌جوشد."),
    ("Please answer the question in one sentence.", "لطفا به پرسش در یک جمله پاسخ بده."),
    ("Thank you for your help.", "از کمک شما متشکرم."),
    ("Translate this sentence into Persian.", "این جمله را به فارسی ترجمه کن."),
    ("The year has twelve months.", "سال دوازده ماه دارد."),
    ("Hafez and Saadi were poets from Shiraz.", "حافظ و سعدی شاعرانی از شیراز بودند."),
    ("Numbers: 0 1 2 3 4 5 6 7 8 9.", "اعداد: ۰ ۱ ۲ ۳ ۴ ۵ ۶ ۷ ۸ ۹."),
]


def bilingual_corpus(num_sentences: int = 2000, seed: int = 0) -> list[str]:
    """English and Persian sentences, half each, plus fixed facts; deterministic for a seed."""
    rng = random.Random(seed)
    english = [
        " ".join(parts) + "."
        for parts in itertools.product(ENGLISH_SUBJECTS, ENGLISH_VERBS, ENGLISH_OBJECTS, ENGLISH_TAILS)
    ]
    persian = [
        " ".join((s, t, o, v)) + "."
        for s, o, v, t in itertools.product(PERSIAN_SUBJECTS, PERSIAN_OBJECTS, PERSIAN_VERBS, PERSIAN_TAILS)
    ]
    half = num_sentences // 2
    sentences = rng.sample(english, half) + rng.sample(persian, half)
    sentences += [s for pair in FACTS for s in pair]
    rng.shuffle(sentences)
    return [s[0].upper() + s[1:] for s in sentences]
