"""`dlkit llm prepare`: what the data looks like to the model before any training.

Prints rendered samples, length statistics and one example with the trained-on tokens highlighted;
writes plots/lengths.png, stats.json and the seeded train/val/test split as OpenAI-messages JSONL.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from dlkit.core import plots
from dlkit.core.config import checked, claim_output
from dlkit.core.progress import console, info
from dlkit.core.run import atomic_write_json, atomic_write_text
from dlkit.llm.config import PrepareConfig
from dlkit.llm.data import (
    IGNORE,
    conversations_of,
    detect_format,
    encode,
    load_rows,
    render,
    split,
    supports_system,
    tokenize_conversations,
)
from dlkit.llm.models import load_tokenizer, resolve_model


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Everything `dlkit llm prepare` does; returns the statistics it prints."""
    checked(cfg)
    base = resolve_model(cfg.model)
    tokenizer = load_tokenizer(base)
    rows, unreadable = load_rows(cfg.data, limit=cfg.limit)
    fmt = detect_format(rows, cfg.format, where=f"--data {cfg.data}")
    counts: Counter = Counter({"malformed": unreadable})
    system_ok = supports_system(tokenizer)
    conversations = conversations_of(rows, fmt, system_ok, counts=counts, where=f"--data {cfg.data}")
    prepared = tokenize_conversations(tokenizer, conversations, cfg.max_length, cfg.drop_long, counts)
    if not prepared.examples:
        from dlkit.core.errors import DataError

        raise DataError(
            f"--data {cfg.data}: no usable conversation ({counts['no_assistant_turn']} without an "
            f"assistant turn, {counts['empty_turn']} with an empty turn, {counts['malformed']} malformed, "
            f"{counts['dropped_long']} too long)"
        )
    train, val, test = split(prepared.conversations, cfg.val_size, cfg.test_size, cfg.split_seed)
    held = claim_output(cfg)
    out = held.root
    for name, part in (("train", train), ("val", val), ("test", test)):
        atomic_write_text(
            out / f"{name}.jsonl", "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in part)
        )
    lengths = sorted(prepared.lengths)
    stats = {
        "data": cfg.data,
        "model": cfg.model,
        "format": fmt,
        "rows": len(rows),
        "conversations": len(prepared.examples),
        "train": len(train),
        "val": len(val),
        "test": len(test),
        "tokens_mean": sum(lengths) / len(lengths),
        "tokens_p50": _pct(lengths, 50),
        "tokens_p95": _pct(lengths, 95),
        "tokens_max": lengths[-1],
        "max_length": cfg.max_length,
        "truncated": counts["truncated"],
        "truncated_pct": 100.0 * counts["truncated"] / len(lengths),
        "dropped_long": counts["dropped_long"],
        "no_assistant_turn": counts["no_assistant_turn"],
        "empty_turn": counts["empty_turn"],
        "malformed": counts["malformed"],
        "system_merged": counts["system_merged"],
        "trained_token_pct": 100.0 * _trained_share(prepared.examples),
        "output_dir": str(out),
    }
    if counts["system_merged"]:
        info(
            f"note: {base.source.spec}'s chat template has no system role; the system text of "
            f"{counts['system_merged']} conversations was merged into their first user turn"
        )
    if counts["no_assistant_turn"]:
        info(f"skipped {counts['no_assistant_turn']} conversations without an assistant turn")
    _show_samples(tokenizer, prepared.conversations[: cfg.samples])
    show_labels(tokenizer, prepared.conversations[0])
    length_plot(lengths, cfg.max_length, out / "plots" / "lengths.png")
    atomic_write_json(out / "stats.json", stats)
    held.release()
    return stats


def _pct(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))]


def _trained_share(examples: list[dict]) -> float:
    total = sum(len(e["labels"]) for e in examples)
    return sum(sum(1 for t in e["labels"] if t != IGNORE) for e in examples) / max(total, 1)


def _show_samples(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> None:
    out = console(stderr=True)
    for i, messages in enumerate(conversations):
        out.rule(f"sample {i} (rendered with the chat template)")
        out.print(render(tokenizer, messages), markup=False, highlight=False)


def show_labels(tokenizer: Any, messages: list[dict[str, str]]) -> None:
    """One conversation with the trained-on tokens (the labels) in bold green and the rest dim. Each run of
    tokens with the same role is decoded as a whole: one token alone can hold half a letter's bytes
    (Persian in a byte-level BPE), which would print as U+FFFD."""
    from rich.text import Text

    ids, labels = encode(tokenizer, messages)
    text = Text()
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE) != (labels[start] != IGNORE):
            text.append(tokenizer.decode(ids[start:end]), style="bold green" if labels[start] != IGNORE else "dim")
            start = end
    out = console(stderr=True)
    out.rule("trained-on tokens (bold green) vs context (dim)")
    out.print(text)


def length_plot(lengths: list[int], max_length: int, path: Path) -> None:
    fig, ax = plots.new_figure(7, 4)
    ax.hist(lengths, bins=min(50, max(10, len(set(lengths)))), color="C0")
    ax.axvline(max_length, color="C3", linestyle="--", label=f"--max-length {max_length}")
    ax.set_xlabel("tokens per conversation (chat template applied)")
    ax.set_ylabel("conversations")
    ax.set_title("conversation lengths")
    ax.legend()
    plots.save_figure(fig, path)
