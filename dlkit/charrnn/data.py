"""Text in, character ids out: reading and checking the text, the vocabulary, the memory-mapped encoded
array, and the block datasets the engine batches.

The text is encoded once into a .npy file in the dlkit cache (keyed by a hash of the text) and opened
with mmap, so a large corpus costs no RAM per DataLoader worker. Training draws random contiguous
blocks; validation reads evenly spread non-overlapping blocks, the same ones at every evaluation.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dlkit.core.errors import DataError
from dlkit.core.sources import cache_dir, resolve
from dlkit.core.splits import DataSplits

CACHE_VERSION = "charrnn-v1"


@dataclass(frozen=True)
class Text:
    """A training text and where it came from; `entropy_rate` (nats/char) is known for builtin:markov."""

    spec: str
    text: str
    entropy_rate: float | None = None


def load_text(spec: str, encoding: str = "utf-8", flag: str = "--data") -> Text:
    """Read builtin:NAME, a local text file, or a Hub dataset's text column, with one-line errors."""
    source = resolve(spec, "data", flag=flag)
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        entry = BUILTINS[source.value]
        if entry.group != "charrnn":
            raise DataError(f"{flag} {spec} is not a text corpus; use builtin:markov or builtin:text")
        corpus = entry.load()
        return Text(spec, corpus.text, corpus.entropy_rate)
    if source.kind == "hub":
        return Text(spec, _hub_text(source.value, flag))
    return Text(spec, read_text_file(source.path, encoding, flag))


def read_text_file(path: Path, encoding: str, flag: str = "--data") -> str:
    if path.is_dir():
        raise DataError(f"{flag} {path} is a folder; pass a text file")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"{flag} {path} is empty; pass a text file")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise DataError(
            f"{flag} {path} is not valid {encoding} (byte 0x{bad:02x} at offset {exc.start}); "
            f"pass its encoding with --encoding, e.g. --encoding latin-1"
        ) from None
    if not text:
        raise DataError(f"{flag} {path} is empty; pass a text file")
    return text


def _hub_text(repo_id: str, flag: str) -> str:
    """The train split's first string column, documents joined by blank lines (e.g. a tiny-shakespeare dataset)."""
    from datasets import load_dataset

    split = load_dataset(repo_id, split="train")
    columns = [name for name, feature in split.features.items() if getattr(feature, "dtype", None) == "string"]
    if not columns:
        raise DataError(f"{flag} {repo_id}: the train split has no text column")
    return "\n\n".join(split[columns[0]])


@dataclass(frozen=True)
class Vocab:
    """The characters of the training text, sorted by code point; a character's id is its rank."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> type:
        return np.uint16 if len(self.chars) <= 2**16 else np.uint32

    def unknown(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.chars))

    def encode(self, text: str) -> np.ndarray:
        """Vectorised: code points, then their rank among the vocabulary's code points."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)
        return np.searchsorted(table, points).astype(self.dtype)

    def decode(self, ids: list[int] | np.ndarray) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"chars": self.chars}


def describe_chars(chars: list[str], limit: int = 10) -> str:
    """'Z', 'é', '\\t' ... for error messages (repr shows invisible characters)."""
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def encoded_memmap(text: str, vocab: Vocab) -> np.ndarray:
    """The whole text as ids, encoded once into the cache and opened read-only with mmap.

    Written to a temporary file and renamed, so parallel processes (tests, torchrun) never read a partial file.
    """
    digest = hashlib.sha1(f"{vocab.chars}\0{text}".encode()).hexdigest()[:20]  # ids depend on both
    path = cache_dir() / "charrnn" / f"{CACHE_VERSION}-{digest}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, vocab.encode(text))
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


@dataclass(frozen=True)
class Splits:
    vocab: Vocab
    train: np.ndarray  # (N_train,) ids, a view into the memory map
    val: np.ndarray  # (N_val,)


def split_text(
    text: Text, block_size: int, val_fraction: float, flag: str = "--data", vocab: Vocab | None = None
) -> Splits:
    """The text's end is the validation split; each split must hold at least one block plus its target.

    `vocab` (a pretrained model's) must cover the text; by default it is built from the text.
    """
    n = len(text.text)
    need = block_size + 1
    val_chars = max(math.ceil(val_fraction * n), need)
    if n - val_chars < need:
        raise DataError(
            f"{flag} {text.spec} has {n} characters, fewer than the {2 * need} needed for one "
            f"training and one validation block of --block-size {block_size} (+1 target each); "
            f"use a longer text or a smaller --block-size"
        )
    if vocab is None:
        vocab = Vocab.from_text(text.text)
    unknown = vocab.unknown(text.text)
    if unknown:
        raise DataError(
            f"{flag} {text.spec} has {len(unknown)} characters outside the model's vocabulary: "
            f"{describe_chars(unknown)}; train from scratch or remove them"
        )
    ids = encoded_memmap(text.text, vocab)
    return Splits(vocab, ids[: n - val_chars], ids[n - val_chars :])


def split_record(text: Text, splits: Splits, val_fraction: float) -> DataSplits:
    """The two character ranges (ids name the range and the text's digest, so a changed text is a new split)."""
    import hashlib

    digest = hashlib.sha1(text.text.encode("utf-8")).hexdigest()[:12]
    cut, end = len(splits.train), len(text.text)
    return DataSplits(
        {"train": [f"chars 0-{cut} of {digest}"], "validation": [f"chars {cut}-{end} of {digest}"]},
        f"the last {val_fraction:.0%} of the characters (at least one block) are validation",
    )


class TrainBlocks(Dataset):
    """Index = start position of a block: item i is ids[i : i + block_size + 1] (inputs and shifted targets)."""

    def __init__(self, ids: np.ndarray, block_size: int) -> None:
        self.ids, self.block_size = ids, block_size

    def __len__(self) -> int:
        return len(self.ids) - self.block_size

    def __getitem__(self, start: int) -> np.ndarray:
        return self.ids[start : start + self.block_size + 1]


class ValBlocks(Dataset):
    """Non-overlapping blocks of the validation split, evenly thinned to at most `max_blocks` (0 = all)."""

    def __init__(self, ids: np.ndarray, block_size: int, max_blocks: int = 0) -> None:
        self.ids, self.block_size = ids, block_size
        starts = np.arange(0, len(ids) - block_size, block_size)
        if max_blocks and len(starts) > max_blocks:
            starts = starts[np.linspace(0, len(starts) - 1, max_blocks).round().astype(int)]
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> np.ndarray:
        start = int(self.starts[index])
        return self.ids[start : start + self.block_size + 1]


def random_block_plan(num_starts: int, num_blocks: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch: `num_blocks` block starts drawn uniformly with replacement from `generator` only."""
    starts = torch.randint(num_starts, (num_blocks,), generator=generator).tolist()
    return [starts[i : i + batch_size] for i in range(0, num_blocks, batch_size)]


def collate_blocks(blocks: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """(B, T + 1) ids -> inputs (B, T) and next-character targets (B, T)."""
    chunk = torch.from_numpy(np.stack(blocks).astype(np.int64))
    return {"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}
