"""`dlkit qa`: extractive question answering. Imports no torch; command bodies load it."""

from __future__ import annotations

from pathlib import Path

from dlkit.core import progress
from dlkit.core.commands import config_command, group_app
from dlkit.qa.config import EvalConfig, PredictConfig, PrepareConfig, QAConfig

app = group_app(
    "qa",
    "Extractive question answering: a span head on a BERT-family encoder, SQuAD v1/v2 data, "
    "sliding windows for long contexts, EM/F1 with Persian normalisation.",
    extra="qa",
    requires=("transformers", "tokenizers"),
)


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Check a SQuAD-format dataset: statistics, length histograms, answer offsets checked and repaired.

    Example: [bold]dlkit qa prepare --data train-v2.0.json --model HooshvareLab/bert-base-parsbert-uncased[/bold]
    """
    from dlkit.qa.prepare import prepare as run_prepare

    stats = run_prepare(cfg)
    if stats["skipped"]:
        progress.warn(
            f"skipped {stats['skipped']} questions: "
            + ", ".join(f"{n} {why}" for why, n in stats["skip_reasons"].items())
        )
    out = Path(cfg.output_dir)
    progress.info(f"wrote {out / 'stats.json'}, {out / 'plots' / 'lengths.png'} and the checked splits (JSONL)")
    progress.emit(stats, _stats_table(stats))


def _stats_table(stats: dict):
    """One column per split, one row per statistic (fits a terminal for any number of splits)."""
    from rich.table import Table

    table = Table(
        title=f"{stats['data']}: max-length {stats['max_length']}, doc-stride {stats['doc_stride']}; "
        f"{stats['repaired_offsets']} offsets repaired, {stats['skipped']} questions skipped"
    )
    splits = stats["splits"]
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")

    def row(label: str, render) -> None:
        table.add_row(label, *(render(s) for s in splits.values()))

    row("questions", lambda s: f"{s['questions']:,}")
    row("contexts", lambda s: f"{s['contexts']:,}")
    row("unanswerable", lambda s: f"{s['unanswerable']:,}")
    row("windows per question", lambda s: f"{s['windows_per_question']:.2f}")
    row("context tokens mean / p95 / max", lambda s: "{mean:.0f} / {p95:.0f} / {max:.0f}".format(**s["context_tokens"]))
    row("question tokens mean / max", lambda s: "{mean:.1f} / {max:.0f}".format(**s["question_tokens"]))
    row("answer tokens mean / max", lambda s: "{mean:.1f} / {max:.0f}".format(**s["answer_tokens"]))
    row("answers past --max-length", lambda s: f"{s['answers_past_max_length_pct']:.1f}%")
    return table


@config_command(app, QAConfig)
def train(cfg: QAConfig) -> None:
    """Fine-tune an encoder with a start/end span head on SQuAD-format data (sliding windows, SQuAD v2 aware).

    Example: [bold]dlkit qa train --data builtin:qa-synthetic --head dropout-linear --epochs 6[/bold]
    Persian (PQuAD): [bold]dlkit qa train --model HooshvareLab/bert-base-parsbert-uncased --data Gholamreza/pquad[/bold]
    """
    from dlkit.qa.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


@config_command(app, EvalConfig)
def evaluate(cfg: EvalConfig) -> None:
    """Exact match and F1 (overall, answerable, unanswerable) of a trained run; predictions and worst examples.

    Example: [bold]dlkit qa eval --run runs/qa/dropout-linear-20260101-120000 --split test[/bold]
    """
    from dlkit.qa.evaluate import evaluate as run_evaluate

    result = run_evaluate(cfg)
    progress.emit(result, _eval_render(result))


def _eval_render(result: dict):
    from rich.console import Group
    from rich.table import Table

    scores = {k: v for k, v in result.items() if k != "worst"}
    worst = Table(title="worst questions", show_lines=False)
    for column in ["id", "question", "gold", "predicted", "F1"]:
        worst.add_column(column, overflow="fold")
    for row in result["worst"]:
        worst.add_row(
            row["id"],
            row["question"],
            " | ".join(row["gold"]) or "(no answer)",
            row["predicted"] or "(no answer)",
            f"{100 * row['f1']:.0f}",
        )
    title = f"qa eval ({result['split']}, {result['split_size']} questions)"
    return Group(progress.metrics_table(scores, title=title), worst)


@config_command(app, PredictConfig)
def predict(cfg: PredictConfig) -> None:
    """The answer span in a passage, with its probability and character offsets.

    Example: [bold]dlkit qa predict --run runs/qa/R --context passage.txt --question "Who founded it?"[/bold]
    """
    from dlkit.qa.evaluate import predict as run_predict

    result = run_predict(cfg)
    lines = [
        f"{c['answer']}\t(p={c['probability']:.3f}, chars {c['start']}-{c['end']})"
        if c["answer"]
        else f"no answer\t(p={c['probability']:.3f}: the passage does not answer the question)"
        for c in result["candidates"]
    ]
    progress.emit(result, "\n".join(lines))
