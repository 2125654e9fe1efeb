"""builtin:qa-synthetic and builtin:tiny-bert: a SQuAD-format QA set with known answers and a tiny BERT for it.

The data are profiles of made-up countries, in English and in Persian: a context states three or four
facts in fixed patterns ("The capital of Valoria is Lima." / "پایتخت والوریا لیما است."), mixed with
filler sentences and, sometimes, a fact about another country (a distractor of the same type). Each
question's answer is a span of its context; a few questions ask about a fact the context does not
state (SQuAD v2 unanswerable). Splits are written as SQuAD v2 JSON files, so the same loader that reads
a real dataset reads them.

The model is a randomly initialised BertForQuestionAnswering with a tiny config and a WordPiece
tokenizer trained here on the bundled bilingual corpus plus the QA text, saved as a fast tokenizer
(offset mapping) in a `save_pretrained` folder. Both are generated once into the dlkit cache.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dlkit.builtin.corpus import bilingual_corpus
from dlkit.core.progress import quiet_transformers
from dlkit.core.sources import cached_folder

DATA_VERSION = "qa-synthetic-v2"
MODEL_VERSION = "tiny-bert-v3"
TINY_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
SPLITS = {"train": (400, 11), "validation": (60, 12), "test": (60, 13)}  # contexts, seed

EN_ENTITIES = [
    "Valoria",
    "Norland",
    "Estavia",
    "Kordana",
    "Miravel",
    "Tarsis",
    "Belmora",
    "Ostrava",
    "Zephyra",
    "Calidor",
    "Drovnia",
    "Marisca",
    "Pelagon",
    "Ulthane",
    "Verdania",
    "Quessa",
    "Lunaris",
    "Brakmor",
    "Solvang",
    "Feradia",
    "Gorvassa",
    "Hestia",
    "Iskara",
    "Jovania",
]
FA_ENTITIES = [
    "والوریا",
    "نورلند",
    "استاویا",
    "کردانا",
    "میراول",
    "تارسیس",
    "بلمورا",
    "استراوا",
    "زفیرا",
    "کالیدور",
    "دروونیا",
    "ماریسکا",
    "پلاگون",
    "اولتان",
    "وردانیا",
    "کسا",
    "لوناریس",
    "براکمور",
    "سولوانگ",
    "فرادیا",
    "گورواسا",
    "هستیا",
    "ایسکارا",
    "جووانیا",
]

EN_VALUES = {
    "capital": [
        "Tehran",
        "Paris",
        "Lima",
        "Oslo",
        "Cairo",
        "Kabul",
        "Rome",
        "Madrid",
        "Berlin",
        "Tokyo",
        "Delhi",
        "Quito",
        "Hanoi",
        "Dakar",
        "Nairobi",
        "Ankara",
        "Baku",
        "Doha",
        "Muscat",
        "Vienna",
        "Prague",
    ],
    "river": [
        "Karun",
        "Nile",
        "Volga",
        "Danube",
        "Amazon",
        "Rhine",
        "Ganges",
        "Mekong",
        "Indus",
        "Tigris",
        "Euphrates",
        "Aras",
        "Jordan",
        "Thames",
        "Seine",
    ],
    "language": [
        "Persian",
        "French",
        "Spanish",
        "German",
        "Turkish",
        "Arabic",
        "Russian",
        "Japanese",
        "Hindi",
        "Greek",
        "Italian",
        "Portuguese",
        "Polish",
        "Kurdish",
    ],
    "currency": ["rial", "euro", "dollar", "yen", "rupee", "dinar", "lira", "peso", "franc", "krona", "pound"],
    "founder": [
        f"{a} {b}"
        for a in ["Cyrus", "Sara", "Darius", "Mina", "Omid", "Leila", "Reza", "Nasrin"]
        for b in ["Amini", "Karimi", "Rostami", "Tehrani", "Farahani", "Sadeghi"]
    ],
    "year": [str(y) for y in range(1700, 1990, 7)],
}
FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
FA_VALUES = {
    "capital": [
        "تهران",
        "پاریس",
        "لیما",
        "اسلو",
        "قاهره",
        "کابل",
        "رم",
        "مادرید",
        "برلین",
        "توکیو",
        "دهلی",
        "کیتو",
        "هانوی",
        "داکار",
        "نایروبی",
        "آنکارا",
        "باکو",
        "دوحه",
        "مسقط",
        "وین",
        "پراگ",
    ],
    "river": [
        "کارون",
        "نیل",
        "ولگا",
        "دانوب",
        "آمازون",
        "راین",
        "گنگ",
        "مکونگ",
        "سند",
        "دجله",
        "فرات",
        "ارس",
        "زاینده‌رود",
        "سفیدرود",
        "اترک",
    ],
    "language": [
        "فارسی",
        "فرانسوی",
        "اسپانیایی",
        "آلمانی",
        "ترکی",
        "عربی",
        "روسی",
        "ژاپنی",
        "هندی",
        "یونانی",
        "ایتالیایی",
        "پرتغالی",
        "لهستانی",
        "کردی",
    ],
    "currency": ["ریال", "یورو", "دلار", "ین", "روپیه", "دینار", "لیر", "پزو", "فرانک", "کرون", "پوند"],
    "founder": [
        f"{a} {b}"
        for a in ["کوروش", "سارا", "داریوش", "مینا", "امید", "لیلا", "رضا", "نسرین"]
        for b in ["امینی", "کریمی", "رستمی", "تهرانی", "فراهانی", "صادقی"]
    ],
    "year": [str(y).translate(FA_DIGITS) for y in range(1100, 1390, 7)],
}

# relation -> (fact, question); {e} is the country, {v} the answer span.
EN_PATTERNS = {
    "capital": ("The capital of {e} is {v}.", "What is the capital of {e}?"),
    "river": ("The longest river in {e} is the {v}.", "What is the longest river in {e}?"),
    "language": ("People in {e} speak {v}.", "What language do people in {e} speak?"),
    "currency": ("The currency of {e} is the {v}.", "What is the currency of {e}?"),
    "founder": ("{e} was founded by {v}.", "Who founded {e}?"),
    "year": ("{e} became independent in {v}.", "When did {e} become independent?"),
}
FA_PATTERNS = {
    "capital": ("پایتخت {e} {v} است.", "پایتخت {e} کجاست؟"),
    "river": ("طولانی‌ترین رود {e} {v} است.", "طولانی‌ترین رود {e} کدام است؟"),
    "language": ("مردم {e} به زبان {v} سخن می‌گویند.", "مردم {e} به چه زبانی سخن می‌گویند؟"),
    "currency": ("واحد پول {e} {v} است.", "واحد پول {e} چیست؟"),
    "founder": ("{e} را {v} بنیان گذاشت.", "چه کسی {e} را بنیان گذاشت؟"),
    "year": ("{e} در سال {v} مستقل شد.", "{e} در چه سالی مستقل شد؟"),
}
LANGUAGES = {"en": (EN_ENTITIES, EN_VALUES, EN_PATTERNS), "fa": (FA_ENTITIES, FA_VALUES, FA_PATTERNS)}


def make_split(
    num_contexts: int,
    seed: int,
    facts: tuple[int, int] = (2, 3),
    fillers: tuple[int, int] = (0, 1),
    values_per_relation: int = 6,
) -> list[dict]:
    """SQuAD v2 `data` entries: one article per context, half English and half Persian."""
    rng = random.Random(seed)
    corpus = bilingual_corpus(num_sentences=400, seed=seed)
    filler_by_lang = {"en": [s for s in corpus if s.isascii()], "fa": [s for s in corpus if not s.isascii()]}
    articles = []
    for index in range(num_contexts):
        lang = "en" if index % 2 == 0 else "fa"
        entities, values, patterns = LANGUAGES[lang]
        entity, other = rng.sample(entities, 2)
        relations = rng.sample(sorted(patterns), rng.randint(*facts))
        answers = {rel: rng.choice(values[rel][:values_per_relation]) for rel in relations}
        sentences: list[tuple[str | None, str]] = [
            (rel, patterns[rel][0].format(e=entity, v=answers[rel])) for rel in relations
        ]
        sentences += [(None, s) for s in rng.sample(filler_by_lang[lang], rng.randint(*fillers))]
        if rng.random() < 0.25:  # the same kind of fact about another country
            rel = rng.choice(relations)
            distractor = rng.choice([v for v in values[rel][:values_per_relation] if v != answers[rel]])
            sentences.append((None, patterns[rel][0].format(e=other, v=distractor)))
        rng.shuffle(sentences)
        context, starts = "", {}
        for fact, sentence in sentences:
            if context:
                context += " "
            if fact is not None:
                starts[fact] = len(context) + _value_offset(patterns[fact][0], entity, answers[fact])
            context += sentence
        qas = []
        for rel in relations:
            qas.append(
                {
                    "id": f"{lang}-{seed}-{index}-{rel}",
                    "question": patterns[rel][1].format(e=entity),
                    "answers": [{"text": answers[rel], "answer_start": starts[rel]}],
                    "is_impossible": False,
                }
            )
        if rng.random() < 0.3:
            rel = rng.choice([r for r in sorted(patterns) if r not in relations])
            qas.append(
                {
                    "id": f"{lang}-{seed}-{index}-{rel}-none",
                    "question": patterns[rel][1].format(e=entity),
                    "answers": [],
                    "is_impossible": True,
                }
            )
        articles.append({"title": entity, "paragraphs": [{"context": context, "qas": qas}]})
    return articles


def _value_offset(pattern: str, entity: str, value: str) -> int:
    head = pattern.split("{v}")[0]
    return len(head.format(e=entity))


def load_data() -> Path:
    """The folder holding train.json, validation.json and test.json (SQuAD v2 format)."""

    def build(folder: Path) -> None:
        for split, (num_contexts, seed) in SPLITS.items():
            payload = {"version": "v2.0", "data": make_split(num_contexts, seed)}
            (folder / f"{split}.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1), "utf-8")

    return cached_folder(f"qa/{DATA_VERSION}", build)


def build_model() -> Path:
    """A `save_pretrained` folder: tiny BertForQuestionAnswering (random init) + fast WordPiece tokenizer."""

    def build(folder: Path) -> None:
        import torch
        from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

        vocab = wordpiece_vocab(tokenizer_corpus())
        tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, strip_accents=False, model_max_length=512)
        config = BertConfig(vocab_size=len(vocab), pad_token_id=vocab["[PAD]"], **TINY_BERT)
        torch.manual_seed(0)
        with quiet_transformers():
            BertForQuestionAnswering(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return cached_folder(f"qa/{MODEL_VERSION}", build)


def tokenizer_corpus() -> list[str]:
    """The bundled bilingual corpus plus every context and question of the synthetic training split."""
    texts = bilingual_corpus()
    for article in make_split(*SPLITS["train"]):
        for paragraph in article["paragraphs"]:
            texts.append(paragraph["context"])
            texts.extend(qa["question"] for qa in paragraph["qas"])
    return texts


def wordpiece_vocab(texts: list[str]) -> dict[str, int]:
    """A WordPiece vocabulary that is the same on every machine: the special tokens, every character alone and
    as a ## continuation, then every word of `texts` (split and lowercased as BertTokenizerFast does), sorted.
    The tokenizers trainer breaks ties between equally frequent merges differently in each process, so its
    vocabulary, and with it which embedding row each word gets, changed from one fresh cache to the next."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True)
    splitter = BertPreTokenizer()
    words = {word for text in texts for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))}
    chars = sorted({c for word in words for c in word})
    tokens = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *chars,
        *(f"##{c}" for c in chars),
        *sorted(w for w in words if len(w) > 1),
    ]
    return {token: i for i, token in enumerate(tokens)}
