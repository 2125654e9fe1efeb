"""`dlkit qa eval` and `dlkit qa predict`: run a trained span model over windows and decode answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from dlkit.core import plots
from dlkit.core.config import checked
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.progress import info, track
from dlkit.core.run import Run
from dlkit.core.splits import Scored, canonical, scored, split_fields
from dlkit.metrics import f1_score
from dlkit.metrics.guard import GuardedMetrics
from dlkit.metrics.qa import scored_answers
from dlkit.qa.config import EvalConfig, PredictConfig, QAConfig, WindowConfig
from dlkit.qa.data import (
    LoadReport,
    QAExample,
    WindowDataset,
    collate_windows,
    load_splits,
    question_id,
    read_file,
    split_examples,
)
from dlkit.qa.models import load_trained
from dlkit.qa.task import collapse_warning, decode, score, window_logits
from dlkit.qa.windows import Span, make_windows


def window_settings(settings: dict[str, Any], **overrides: int | None) -> WindowConfig:
    """The windows the model was trained with, unless the command overrides them."""
    values: dict[str, Any] = {
        k: settings[k] for k in ("max_length", "doc_stride", "max_answer_length", "n_best") if k in settings
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = WindowConfig(**values)
    cfg.validate_windows()
    return cfg


@torch.no_grad()
def spans_for(
    model: Any,
    tokenizer: Any,
    examples: list[QAExample],
    cfg: WindowConfig,
    allow_null: bool,
    batch_size: int,
    top_k: int = 1,
) -> dict[str, list[Span]]:
    windows = make_windows(tokenizer, examples, cfg)
    dataset = WindowDataset(windows)
    rows = []
    batches = range(0, len(dataset), batch_size)
    for first in track(batches, "answering", total=len(batches)):
        batch = collate_windows(
            [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))], tokenizer.pad_token_id or 0
        )
        start_logits, end_logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        rows.extend(window_logits(start_logits, end_logits, batch))
    return decode(examples, windows, rows, cfg, allow_null, top_k)


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """EM/F1 of a run's final model on a split; writes eval.json, predictions and worst examples into the run."""
    checked(cfg)
    batch_size, worst = cfg.batch_size, cfg.worst
    run = Run.open(cfg.run, group="qa")
    model, tokenizer, settings = load_trained(run.model_dir)
    windows = window_settings(settings, max_answer_length=cfg.max_answer_length, n_best=cfg.n_best)
    examples, part, spec, report = questions_to_score(run, cfg.data, cfg.split, cfg.strict)
    split_name, left_out = part.name, part.left_out
    allow_null = bool(settings.get("allow_null")) or any(not e.answerable for e in examples)
    spans = spans_for(model, tokenizer, examples, windows, allow_null, batch_size)
    prefix = re.sub(r"\W+", "_", split_name)  # metric names: test_f1, dev_v2_0_f1
    scores = GuardedMetrics(prefix=f"{prefix}_")
    scores.add("exact match/F1", lambda: score(examples, spans, allow_null))
    collapse_warning(scores.values, f"{prefix}_", split_name)
    rows = per_question(examples, spans, allow_null)
    result = {
        "data": spec,
        **split_fields(split_name, len(examples), left_out),
        "questions": len(examples),
        "skipped_items": report.skipped,
        "repaired_offsets": report.repaired,
        f"{prefix}_examples": len(examples),
        **scores.values,
        **scores.failures(),
    }
    run.write_json(f"eval/{split_name}_predictions.json", {r["id"]: r["predicted"] for r in rows})
    run.write_json(f"eval/{split_name}_worst.json", sorted(rows, key=lambda r: (r["f1"], r["id"]))[: max(worst, 0)])
    run.write_json(f"eval/{split_name}_scores.json", result)
    run.write_json("eval.json", result)  # the latest evaluation
    run.write_metrics({**run.read_metrics(), **{k: v for k, v in result.items() if k.startswith(prefix + "_")}})
    f1_by_length_plot(rows, run.plots_dir / f"{split_name}_f1_by_context_length.png")
    info(f"wrote {run.dir / 'eval.json'} and eval/{split_name}_{{scores,predictions,worst}}.json")
    result["worst"] = sorted(rows, key=lambda r: (r["f1"], r["id"]))[: max(worst, 0)]
    return result


def questions_to_score(
    run: Run, data: str | None, split: str | None, strict: bool
) -> tuple[list[QAExample], Scored, str, LoadReport]:
    """(the questions to score, what they are, data spec, load report). Without --data: the run's own splits, cut
    again with its settings; with --data: that file whole, or the splits of that folder or dataset. Which split
    and which of its questions: dlkit.core.splits.scored (held-out, without the questions the run trained on)."""
    report = LoadReport()
    if data is None:
        cfg = run.config_as(QAConfig)
        splits, _ = split_examples(cfg.data, cfg.val_fraction, cfg.seed, strict, report)
        spec = cfg.data
    elif Path(data).expanduser().is_file():
        split = canonical(split or Path(data).stem)  # the file is scored whole, under its name
        splits, spec = {split: read_file(Path(data).expanduser(), strict, report)}, data
    else:
        splits, spec = load_splits(data, strict, report), data
    if not any(splits.values()):
        raise ConfigError(f"--data {spec}: no usable question to evaluate ({report.skipped} skipped)")
    splits = {canonical(name): examples for name, examples in splits.items()}
    part = scored(run, split, {name: [question_id(e) for e in examples] for name, examples in splits.items()})
    return [splits[part.name][i] for i in part.keep], part, spec, report


def per_question(examples: list[QAExample], spans: dict[str, list[Span]], v2: bool) -> list[dict[str, Any]]:
    rows = []
    for example in examples:
        span = spans[example.id][0]
        rows.append(
            {
                "id": example.id,
                "question": example.question,
                "gold": example.answers,
                "predicted": span.text,
                "probability": round(span.probability, 4),
                "f1": round(f1_score(span.text, scored_answers(example.answers, v2)), 4),
                "context_chars": len(example.context),
            }
        )
    return rows


def f1_by_length_plot(rows: list[dict[str, Any]], path: Path, buckets: int = 5) -> None:
    """Mean F1 per context-length quintile: where long contexts hurt, the bars drop."""
    ordered = sorted(rows, key=lambda r: r["context_chars"])
    size = max(1, -(-len(ordered) // buckets))
    groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    labels = [f"{g[0]['context_chars']}-{g[-1]['context_chars']}" for g in groups]
    values = [100 * sum(r["f1"] for r in g) / len(g) for g in groups]
    plots.bar_chart(labels, values, path, ylabel="F1 (%)", title="F1 by context length (characters)")


def _is_file(text: str) -> bool:
    """Whether --context names a file; a passage longer than a file name can be (OSError) is text."""
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def predict(cfg: PredictConfig) -> dict[str, Any]:
    """The best spans for one question about one context (a text or a file path)."""
    checked(cfg)
    context, question, top_k = cfg.context, cfg.question, cfg.top_k
    if not question.strip():
        raise ConfigError("--question is empty; pass the question to answer")
    if _is_file(context):
        path = Path(context).expanduser()
        try:
            context = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"--context {path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    if not context.strip():
        raise ConfigError("--context is empty; pass the passage text or a text file")
    run = Run.open(cfg.run, group="qa")
    model, tokenizer, settings = load_trained(run.model_dir)
    example = QAExample("question", context, question.strip(), [], [])
    spans = spans_for(
        model, tokenizer, [example], window_settings(settings), bool(settings.get("allow_null")), 32, top_k
    )
    # the null answer ("no answer", SQuAD v2) has no place in the passage: its offsets are None, not -1
    answers = [
        {
            "answer": s.text,
            "probability": s.probability,
            "score": s.score,
            "start": s.start_char if s.text else None,
            "end": s.end_char if s.text else None,
        }
        for s in spans[example.id]
    ]
    return {"question": question.strip(), **answers[0], "candidates": answers}
