"""`dlkit caption prepare`: read a caption dataset, clean it, build the vocabulary, split it by image,
and write what a person wants to look at before training (plots and statistics).

The output folder is itself a dataset (`prepared.json` + vocab.json), so
`dlkit caption train --data OUTPUT` trains on exactly this split and vocabulary.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from dlkit.caption import viz
from dlkit.caption.config import PrepareConfig
from dlkit.caption.data import build_vocab, caption_lengths, clean_caption, coverage, word_counts, write_split_files
from dlkit.core.config import checked, claim_output, local_inputs
from dlkit.core.outputs import check_output
from dlkit.core.progress import info
from dlkit.core.run import atomic_write_json
from dlkit.data.captions import load_caption_records, readable_records, split_records, write_prepared


def default_output(data: str) -> Path:
    name = re.sub(r"[^\w.-]+", "-", Path(data.removeprefix("builtin:")).name or "data").strip("-") or "data"
    return Path("data") / "caption" / name


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Everything `caption prepare` does; returns the statistics it prints."""
    checked(cfg)
    out = Path(cfg.output_dir).expanduser() if cfg.output_dir else default_output(cfg.data)
    check_output(out, "caption", "prepare", overwrite=cfg.overwrite, inputs=local_inputs(cfg))
    records, stats = load_caption_records(cfg.data, cfg.strict)
    records, undecodable = readable_records(records, cfg.strict)
    held = claim_output(cfg, out)

    splits = split_records(records, seed=cfg.seed)
    vocab = build_vocab(splits["train"], cfg.min_freq, cfg.max_len)
    vocab.save(out / "vocab.json")
    write_split_files(out, splits)
    lengths = caption_lengths(records)
    stats = {
        **stats,
        "images": len(records),
        "captions": sum(len(r.captions) for r in records),
        "skipped_undecodable_images": undecodable,
        "train_images": len(splits["train"]),
        "val_images": len(splits["val"]),
        "test_images": len(splits["test"]),
        "vocab_size": len(vocab),
        "min_freq": cfg.min_freq,
        "coverage": coverage(splits["train"], vocab),
        "max_len": vocab.max_len,
        "mean_caption_words": sum(lengths) / max(len(lengths), 1),
        "output_dir": str(out),
    }
    write_prepared(out, [r for split in splits.values() for r in split], stats)
    atomic_write_json(out / "stats.json", stats)

    plots = out / "plots"
    sample = random.Random(cfg.seed).sample(records, min(5, len(records)))
    viz.caption_grid(
        [(r.image, [clean_caption(c) for c in r.captions[:5]]) for r in sample],
        plots / "samples.png",
        "5 random images with their cleaned captions",
    )
    viz.length_scatter(lengths, plots / "caption_lengths.png")
    viz.top_words(word_counts(records).most_common(20), plots / "top_words.png")
    held.release()
    info(
        f"wrote {out}/vocab.json, split files, prepared.json and plots/ (samples, caption_lengths, top_words); "
        f"train on it with: dlkit caption train --data {out}"
    )
    return stats
