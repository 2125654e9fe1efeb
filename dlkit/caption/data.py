"""Caption data for the caption group: caption cleaning, the vocabulary, fixed-length encoding, image
tensors, the (image, caption) datasets and their collation, and the train/val/test splits it trains on.
Reading the datasets' layouts is dlkit.data.captions, shared with clip.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dlkit.caption.config import CaptionConfig
from dlkit.core.errors import DataError
from dlkit.core.features import FEATURES
from dlkit.core.run import atomic_write_json, atomic_write_text
from dlkit.data.captions import (
    PREPARED_FILE,
    CaptionRecord,
    load_caption_records,
    read_json_file,
    readable_records,
    split_records,
    splits_given,
)
from dlkit.data.images import open_image

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = range(4)
PRELOAD_BYTES = 512 * 2**20  # keep decoded, resized images in memory below this size


# -- reading ----------------------------------------------------------------------------------------


# -- images -----------------------------------------------------------------------------------------


# -- text -------------------------------------------------------------------------------------------


def clean_caption(text: Any) -> str:
    """Lowercase; drop punctuation, symbols and digits (apostrophes join: don't -> dont); collapse spaces."""
    text = unicodedata.normalize("NFKC", str(text or "")).lower().replace("'", "").replace("\u2019", "")
    kept = "".join(ch if unicodedata.category(ch)[0] in "LM" else " " for ch in text)
    return " ".join(kept.split())


def tokenize(text: Any) -> list[str]:
    return clean_caption(text).split()


@dataclass
class Vocab:
    """Word <-> id with <pad>=0, <sos>=1, <eos>=2, <unk>=3; `max_len` counts <sos> and <eos>."""

    itos: list[str]
    max_len: int
    min_freq: int = 1
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != SPECIALS:
            raise DataError(f"vocabulary must start with {', '.join(SPECIALS)}")
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """<sos> words <eos> <pad>...: exactly max_len ids (long captions are cut before <eos>)."""
        length = max_len or self.max_len
        words = tokenize(text)[: length - 2]
        ids = [SOS_ID, *(self.stoi.get(w, UNK_ID) for w in words), EOS_ID]
        return ids + [PAD_ID] * (length - len(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>; <sos> and <pad> dropped."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (SOS_ID, PAD_ID):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        return {"itos": self.itos, "max_len": self.max_len, "min_freq": self.min_freq}

    def save(self, path: str | Path) -> Path:
        atomic_write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = read_json_file(Path(path))
        try:
            return cls(list(data["itos"]), int(data["max_len"]), int(data.get("min_freq", 1)))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a vocabulary file (missing {exc})") from None


def word_counts(records: Iterable[CaptionRecord]) -> Counter:
    counts: Counter = Counter()
    for record in records:
        for caption in record.captions:
            counts.update(tokenize(caption))
    return counts


def caption_lengths(records: Iterable[CaptionRecord]) -> list[int]:
    return [len(tokenize(c)) for r in records for c in r.captions]


def default_max_len(records: Iterable[CaptionRecord], quantile: float = 0.95) -> int:
    """The p95 caption length in words, plus <sos> and <eos>."""
    lengths = sorted(caption_lengths(records))
    if not lengths:
        return 2
    index = min(len(lengths) - 1, max(0, int(round(quantile * (len(lengths) - 1)))))
    return lengths[index] + 2


def build_vocab(records: Iterable[CaptionRecord], min_freq: int = 1, max_len: int | None = None) -> Vocab:
    """Words seen at least `min_freq` times, most frequent first (ties alphabetical), after the specials."""
    records = list(records)
    counts = word_counts(records)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return Vocab([*SPECIALS, *words], max_len or default_max_len(records), min_freq)


def coverage(records: Iterable[CaptionRecord], vocab: Vocab) -> float:
    """Fraction of word occurrences the vocabulary covers (the rest become <unk>)."""
    counts = word_counts(records)
    total = sum(counts.values())
    return sum(c for w, c in counts.items() if w in vocab.stoi) / total if total else 1.0


# -- splitting --------------------------------------------------------------------------------------


def write_split_files(folder: Path, splits: dict[str, list[CaptionRecord]]) -> dict[str, Path]:
    """One image path per line: train_images.txt, val_images.txt, test_images.txt."""
    paths = {}
    for split, records in splits.items():
        path = Path(folder) / f"{split}_images.txt"
        atomic_write_text(path, "".join(f"{r.image}\n" for r in records))
        paths[split] = path
    return paths


def image_tensor(image, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """PIL RGB image -> (3, size, size) float tensor, resized (no crop: a caption describes the whole image)
    and normalised with the encoder's mean/std."""
    from PIL import Image

    array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class ImageStore:
    """Images by index: decoded on demand, or all held in memory when they are small (builtin:shapes)."""

    def __init__(self, paths: list[str], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.paths, self.size, self.mean, self.std = paths, size, mean, std
        self.cache: list[Tensor] | None = None
        if len(paths) * 3 * size * size * 4 <= PRELOAD_BYTES:
            self.cache = [self.load(i) for i in range(len(paths))]

    def load(self, index: int) -> Tensor:
        return image_tensor(open_image(self.paths[index]), self.size, self.mean, self.std)

    def __getitem__(self, index: int) -> Tensor:
        return self.cache[index] if self.cache is not None else self.load(index)

    def __len__(self) -> int:
        return len(self.paths)


class CaptionPairs(Dataset):
    """Every (image, caption) pair of some images: one epoch sees each caption once."""

    def __init__(self, image_ids: list[int], tokens: list[list[int]], source: Any) -> None:
        self.image_ids, self.tokens, self.source = image_ids, tokens, source

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": self.source[self.image_ids[index]],
            "tokens": torch.tensor(self.tokens[index]),
            "image_id": self.image_ids[index],
        }


def collate(examples: list[dict[str, Any]]) -> dict[str, Tensor]:
    key = FEATURES if examples[0]["image"].dim() == 2 else "images"  # (L, C) cached features or (3, H, W)
    return {
        key: torch.stack([e["image"] for e in examples]),
        "tokens": torch.stack([e["tokens"] for e in examples]),
        "image_id": torch.tensor([e["image_id"] for e in examples]),
    }


def prepare_splits(cfg: CaptionConfig) -> tuple[dict[str, list[CaptionRecord]], Vocab, dict[str, Any]]:
    """Read, drop undecodable images, split by image and build the vocabulary on the training split
    (or reuse the vocab.json of a folder written by `caption prepare`)."""
    records, stats = load_caption_records(cfg.data, cfg.strict)
    records, undecodable = readable_records(records, cfg.strict)
    stats["skipped_undecodable_images"] = undecodable
    stats["splits_given"] = splits_given(records)
    splits = split_records(records, seed=cfg.seed)
    if not splits["train"]:
        raise DataError(f"--data {cfg.data}: the training split is empty ({len(records)} images)")
    prepared_vocab = Path(cfg.data) / "vocab.json"
    if (Path(cfg.data) / PREPARED_FILE).is_file() and prepared_vocab.is_file():
        vocab = Vocab.load(prepared_vocab)
        if cfg.max_len:
            vocab.max_len = cfg.max_len
    else:
        vocab = build_vocab(splits["train"], cfg.min_freq, cfg.max_len)
    return splits, vocab, stats
