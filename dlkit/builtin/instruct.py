"""builtin:instruct and builtin:instruct-fa: synthetic ShareGPT conversations with one right answer.

Every answer is a deterministic function of the question (a capital from a fixed table, the words of
a list reversed, the sum of two small numbers), so exact match measures what a fine-tune learned and
the untuned model scores zero. Some rows carry a system turn and some are two-turn conversations,
which exercises the chat templates and the assistant-only labels.
"""

from __future__ import annotations

import random

CAPITALS = [
    ("Iran", "Tehran"),
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Germany", "Berlin"),
    ("Turkey", "Ankara"),
    ("Greece", "Athens"),
    ("Canada", "Ottawa"),
]
CAPITALS_FA = [
    ("ایران", "تهران"),
    ("فرانسه", "پاریس"),
    ("ژاپن", "توکیو"),
    ("مصر", "قاهره"),
    ("ایتالیا", "رم"),
    ("اسپانیا", "مادرید"),
    ("چین", "پکن"),
    ("روسیه", "مسکو"),
    ("آلمان", "برلین"),
    ("ترکیه", "آنکارا"),
    ("یونان", "آتن"),
    ("کانادا", "اتاوا"),
]
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "book", "door", "river", "house"]
WORDS_FA = ["قرمز", "آبی", "سبز", "گربه", "سگ", "خورشید", "ماه", "درخت", "کتاب", "در", "رود", "خانه"]
PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
SYSTEM = {"en": "You are a helpful assistant. Answer briefly.", "fa": "تو یک دستیار مفید هستی. کوتاه پاسخ بده."}
TASKS = ("capital", "reverse", "add")


def _question(task: str, lang: str, rng: random.Random) -> tuple[str, str]:
    if task == "capital":
        country, capital = rng.choice(CAPITALS if lang == "en" else CAPITALS_FA)
        if lang == "en":
            return f"What is the capital of {country}?", capital
        return f"پایتخت {country} کجاست؟", capital
    if task == "reverse":
        words = rng.sample(WORDS if lang == "en" else WORDS_FA, 3)
        prompt = "Reverse these words: " if lang == "en" else "این کلمه‌ها را برعکس کن: "
        return prompt + " ".join(words), " ".join(reversed(words))
    if task == "add":
        a, b = rng.randrange(10), rng.randrange(10)
        if lang == "en":
            return f"Add {a} and {b}.", str(a + b)
        return f"{a} و {b} را جمع کن.".translate(PERSIAN_DIGITS), str(a + b).translate(PERSIAN_DIGITS)
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def conversations(
    num: int = 600,
    seed: int = 0,
    lang: str = "en",
    tasks: tuple[str, ...] = TASKS,
    multi_turn: float = 0.2,
    system: float = 0.3,
) -> list[dict]:
    """`num` ShareGPT rows; a fraction `multi_turn` has two question/answer turns, `system` a system turn."""
    rng = random.Random(seed)
    rows = []
    for _ in range(num):
        turns = []
        if rng.random() < system:
            turns.append({"from": "system", "value": SYSTEM[lang]})
        for _ in range(2 if rng.random() < multi_turn else 1):
            question, answer = _question(rng.choice(tasks), lang, rng)
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        rows.append({"conversations": turns})
    return rows


def load_instruct(num: int = 600, seed: int = 0, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    return conversations(num, seed, "en", tasks)


def load_instruct_fa(num: int = 600, seed: int = 0, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    return conversations(num, seed, "fa", tasks)


def tokenizer_text() -> list[str]:
    """Every word the synthetic tasks use, so the builtin tokenizers have them as tokens."""
    lines = [f"What is the capital of {c}? {k}" for c, k in CAPITALS]
    lines += [f"پایتخت {c} کجاست؟ {k}" for c, k in CAPITALS_FA]
    lines += ["Reverse these words: " + " ".join(WORDS), "این کلمه‌ها را برعکس کن: " + " ".join(WORDS_FA)]
    lines += [f"Add {a} and {b}. {a + b}" for a in range(10) for b in range(10)]
    lines += [f"{a} و {b} را جمع کن. {a + b}".translate(PERSIAN_DIGITS) for a in range(10) for b in range(10)]
    return lines + list(SYSTEM.values())
