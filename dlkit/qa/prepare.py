"""`dlkit qa prepare`: check a SQuAD-format dataset against a tokenizer before training on it.

Prints per-split statistics (questions, contexts, unanswerable share, answer/question/context lengths in
tokens, the share of answers that end past --max-length, windows per question), writes them to
stats.json with length histograms in plots/, and writes the checked (repaired) splits as JSONL that
`qa train --data FOLDER` reads. A single file is named by the split its name says (pqa_test.json: test),
else `all`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dlkit.core import plots
from dlkit.core.config import checked, claim_output
from dlkit.core.errors import DataError
from dlkit.core.run import atomic_write_json, atomic_write_text
from dlkit.core.splits import split_in_name
from dlkit.qa.config import PrepareConfig, WindowConfig
from dlkit.qa.data import LoadReport, QAExample, load_splits
from dlkit.qa.models import check_and_load
from dlkit.qa.windows import make_windows


def prepare(config: PrepareConfig) -> dict[str, Any]:
    """Everything `dlkit qa prepare` does; returns the statistics it prints."""
    checked(config)
    data, model, strict = config.data, config.model, config.strict
    cfg = WindowConfig(max_length=config.max_length, doc_stride=config.doc_stride)
    _, tokenizer = check_and_load(model)
    report = LoadReport()
    splits = load_splits(data, strict, report)
    if Path(data).expanduser().is_file():  # one file is no train split: it is the split its name says, or all
        splits = {split_in_name(data): splits["train"]}
    if not any(splits.values()):
        raise DataError(f"--data {data}: no usable question ({report.skipped} skipped: {_reasons(report)})")
    stats: dict[str, Any] = {
        "data": data,
        "model": model,
        "max_length": cfg.max_length,
        "doc_stride": cfg.doc_stride,
        "checked_questions": report.questions,
        "repaired_offsets": report.repaired,
        "skipped": report.skipped,
        "skip_reasons": report.reasons,
        "splits": {},
    }
    lengths: dict[str, list[int]] = {"context": [], "question": [], "answer": []}
    held = claim_output(config)
    output_dir = held.root
    for split, examples in splits.items():
        split_stats, split_lengths = describe(tokenizer, examples, cfg)
        stats["splits"][split] = split_stats
        for key, values in split_lengths.items():
            lengths[key].extend(values)
        write_jsonl(output_dir / f"{split}.jsonl", examples)
    stats["answers_per_question"] = {split: answer_counts(examples) for split, examples in splits.items()}
    atomic_write_json(output_dir / "stats.json", stats)
    length_histograms(lengths, cfg.max_length, output_dir / "plots" / "lengths.png")
    answers_plot(stats["answers_per_question"], output_dir / "plots" / "answers_per_question.png")
    held.release()
    return stats


def answer_counts(examples: list[QAExample]) -> dict[str, int]:
    """How many questions have 0 (unanswerable), 1, 2, ... gold answers, as {"0": n0, "1": n1, ...}."""
    counts: dict[int, int] = {}
    for example in examples:
        counts[len(example.answers)] = counts.get(len(example.answers), 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


def answers_plot(per_split: dict[str, dict[str, int]], path: Path) -> None:
    """Questions by number of gold answers, one bar group per split (0 = unanswerable)."""
    fig, ax = plots.new_figure(7, 4)
    keys = sorted({int(k) for counts in per_split.values() for k in counts})
    width = 0.8 / max(len(per_split), 1)
    for i, (split, counts) in enumerate(per_split.items()):
        ax.bar([k + i * width for k in keys], [counts.get(str(k), 0) for k in keys], width, label=split)
    ax.set_xticks([k + 0.4 - width / 2 for k in keys], [str(k) for k in keys])
    ax.set_xlabel("gold answers per question (0 = unanswerable)")
    ax.set_ylabel("questions")
    ax.set_title("questions by number of answers")
    ax.legend()
    plots.save_figure(fig, path)


def describe(
    tokenizer: Any, examples: list[QAExample], cfg: WindowConfig
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """Statistics of one split, and the token lengths behind its histograms."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # full-length encodings exceed model_max_length on purpose
    try:
        return _describe(tokenizer, examples, cfg)
    finally:
        hf_logging.set_verbosity(verbosity)


def _describe(
    tokenizer: Any, examples: list[QAExample], cfg: WindowConfig
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    contexts = sorted({e.context for e in examples})
    context_tokens = (
        {
            c: len(ids)
            for c, ids in zip(contexts, tokenizer(contexts, add_special_tokens=False)["input_ids"], strict=True)
        }
        if contexts
        else {}
    )
    question_tokens = (
        [len(ids) for ids in tokenizer([e.question for e in examples], add_special_tokens=False)["input_ids"]]
        if examples
        else []
    )
    answer_tokens, past = [], 0
    for example in (e for e in examples if e.answerable):
        encoded = tokenizer(example.question, example.context, return_offsets_mapping=True)
        end_char = example.answer_starts[0] + len(example.answers[0])
        sequence_ids = encoded.sequence_ids()
        positions = [
            k
            for k, (o, s) in enumerate(zip(encoded["offset_mapping"], sequence_ids, strict=True))
            if s == 1 and o[0] < end_char and o[1] > example.answer_starts[0]
        ]
        answer_tokens.append(len(positions))
        past += bool(positions) and positions[-1] >= cfg.max_length - 1  # the window's last token is [SEP]
    windows = make_windows(tokenizer, examples, cfg)
    answerable = len(answer_tokens)
    stats = {
        "questions": len(examples),
        "contexts": len(contexts),
        "unanswerable": len(examples) - answerable,
        "windows": len(windows),
        "windows_per_question": len(windows) / max(len(examples), 1),
        "answers_past_max_length_pct": 100.0 * past / max(answerable, 1),
        "context_tokens": _summary(list(context_tokens.values())),
        "question_tokens": _summary(question_tokens),
        "answer_tokens": _summary(answer_tokens),
    }
    return stats, {"context": list(context_tokens.values()), "question": question_tokens, "answer": answer_tokens}


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered),
        "p50": float(ordered[len(ordered) // 2]),
        "p95": float(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]),
        "max": float(ordered[-1]),
    }


def _reasons(report: LoadReport) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in report.reasons.items()) or "none"


def write_jsonl(path: Path, examples: list[QAExample]) -> None:
    lines = [
        json.dumps(
            {
                "id": e.id,
                "title": e.title,
                "context": e.context,
                "question": e.question,
                "answers": {"text": e.answers, "answer_start": e.answer_starts},
            },
            ensure_ascii=False,
        )
        for e in examples
    ]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def length_histograms(lengths: dict[str, list[int]], max_length: int, path: Path) -> None:
    """Context, question and answer lengths in tokens; the context panel marks --max-length."""
    fig, _ = plots.new_figure(12, 3.6)
    fig.clf()
    axes = fig.subplots(1, 3)
    for ax, (name, values) in zip(axes, lengths.items(), strict=True):
        values = values or [0]
        low, high = min(values), max(values)
        bins = [b - 0.5 for b in range(low, high + 2)] if high - low < 40 else 30  # whole tokens when few
        ax.hist(values, bins=bins, color="C0")
        ax.set_title(f"{name} length (tokens)")
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3)
    axes[0].axvline(max_length, color="C3", linestyle="--", label=f"--max-length {max_length}")
    axes[0].legend()
    axes[0].set_ylabel("count")
    plots.save_figure(fig, path)
