"""builtin:sentiment and builtin:tiny-roberta: a sentiment set with a known rule and a tiny RoBERTa for it.

builtin:sentiment: template sentences around one adjective; label 1 (positive) iff the adjective is from
POSITIVE, 0 iff it is from NEGATIVE. The fillers are shared by both classes, so the adjective is the only
signal and a model that learned the rule reaches 100% on the test split. Written as train.jsonl,
validation.jsonl and test.jsonl with "text" and "label" keys.

builtin:tiny-roberta: a real RobertaForSequenceClassification (2 layers, hidden 64) with a byte-level BPE
tokenizer trained here on the bundled English+Persian corpus plus the sentiment sentences, saved as a
save_pretrained folder (config, weights, tokenizer).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dlkit.builtin.corpus import bilingual_corpus
from dlkit.core.progress import quiet_transformers
from dlkit.core.sources import cached_folder

POSITIVE = [
    "good",
    "great",
    "wonderful",
    "excellent",
    "delightful",
    "brilliant",
    "lovely",
    "superb",
    "enjoyable",
    "charming",
    "fantastic",
    "moving",
]
NEGATIVE = [
    "bad",
    "awful",
    "terrible",
    "boring",
    "dreadful",
    "poor",
    "dull",
    "horrible",
    "weak",
    "painful",
    "clumsy",
    "tedious",
]
SUBJECTS = [
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the ending",
    "the soundtrack",
    "the story",
    "the director's work",
    "the script",
    "the cast",
    "the second half",
    "the dialogue",
]
TEMPLATES = [
    "{subject} was {adj}",
    "i thought {subject} was {adj}",
    "honestly , {subject} is {adj}",
    "{subject} felt {adj} to me",
    "overall {subject} was really {adj}",
    "we all agreed {subject} was {adj}",
    "my friends said {subject} is {adj}",
    "{subject} turned out {adj}",
]
LABELS = ["negative", "positive"]


def sentences(num: int, seed: int, distinct: bool = False) -> list[dict]:
    """`num` random sentences; with `distinct`, no sentence twice (at most 2,304 exist)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < num:
        label = rng.randrange(2)
        adj = rng.choice(POSITIVE if label else NEGATIVE)
        text = rng.choice(TEMPLATES).format(subject=rng.choice(SUBJECTS), adj=adj)
        if distinct and text in seen:
            continue
        seen.add(text)
        rows.append({"text": text, "label": LABELS[label]})
    return rows


def _build_sentiment(path: Path, num_train: int = 1200, num_held_out: int = 300) -> None:
    """Distinct sentences cut into train, test and validation: no held-out sentence is a training sentence, so
    held-out accuracy measures the rule, not recall of sentences seen in training."""
    rows = sentences(num_train + 2 * num_held_out, seed=0, distinct=True)
    parts = {
        "train": rows[:num_train],
        "test": rows[num_train : num_train + num_held_out],
        "validation": rows[num_train + num_held_out :],
    }
    for split, part in parts.items():
        (path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")


def sentiment() -> Path:
    """A folder with train.jsonl (1200 rows), validation.jsonl and test.jsonl (300 rows each) of {"text", "label"}."""
    return cached_folder("sentiment-v3", _build_sentiment)


def _build_tiny_roberta(path: Path, vocab_size: int = 2000) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    texts = bilingual_corpus() + [row["text"] for row in sentences(2000, seed=2)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    raw = path / "bpe"
    raw.mkdir()
    bpe.save_model(str(raw))
    tokenizer = RobertaTokenizer(vocab=str(raw / "vocab.json"), merges=str(raw / "merges.txt"))
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)
    for file in raw.iterdir():
        file.unlink()
    raw.rmdir()

    torch.manual_seed(0)
    # initializer_range 0.1 instead of the usual 0.02: with 0.02 the random attention hardly mixes other tokens into
    # <s>, so a frozen model gives adapters almost nothing to work with; at 0.1 adapters learn the rule in seconds.
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=2,
        initializer_range=0.1,
    )
    with quiet_transformers():
        RobertaForSequenceClassification(config).save_pretrained(path)


def tiny_roberta() -> Path:
    """A save_pretrained folder: RobertaForSequenceClassification (2 layers, hidden 64) + BPE tokenizer."""
    return cached_folder("tiny-roberta-v2", _build_tiny_roberta)
