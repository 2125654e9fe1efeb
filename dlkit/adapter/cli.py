"""`dlkit adapter`: text classification with bottleneck adapters (written in dlkit.nn) in a frozen encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.adapter.config import AdapterConfig
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app, run_option
from dlkit.core.run import is_main_process

app = group_app("adapter", "Text classification with bottleneck adapters in a frozen RoBERTa/BERT, or head/full "
                "fine-tuning.", extra="adapter", requires=("transformers", "tokenizers"))


@config_command(app, AdapterConfig)
def train(cfg: AdapterConfig) -> None:
    """Train a sentiment/text classifier; with --method adapter only adapters, layer norms and the head train.

    Example: [bold]dlkit adapter train --model builtin:tiny-roberta --data builtin:sentiment --method adapter
    --placement houlsby --bottleneck 16[/bold]
    """
    from dlkit.adapter.task import train as run_training

    metrics = run_training(cfg)
    if is_main_process():  # under torchrun every process returns the same metrics
        progress.emit(metrics, progress.metrics_table(metrics))


@app.command("eval")
def evaluate(
    run: Annotated[Path, run_option()],
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 64,
    split: Annotated[Optional[str], typer.Option(help="Split to score: validation (default: the texts held "  # noqa: UP045
                                                 "out of training) or train (only when asked; train_* metrics).")
                     ] = None,
) -> None:
    """Accuracy, precision, recall and F1 (binary and macro), confusion matrix PNG and the misclassified texts
    (samples/misclassified.csv), on the run's validation split; test_* metrics go into metrics.json.

    Example: [bold]dlkit adapter eval --run runs/adapter/houlsby[/bold]
    """
    from dlkit.adapter.task import evaluate_run
    from dlkit.core.classification import show_evaluation

    show_evaluation(run, evaluate_run(run, batch_size=batch_size, split=split), "text")


@app.command()
def predict(
    run: Annotated[Path, run_option()],
    texts: Annotated[list[str], typer.Argument(help="Sentences to classify.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per sentence.")] = 5,
) -> None:
    """The most likely labels with probabilities for each sentence (a table, or a list with --json).

    Example: [bold]dlkit adapter predict --run runs/adapter/houlsby "the plot was wonderful"[/bold]
    """
    from dlkit.adapter.task import predict as run_predict
    from dlkit.core.classification import predictions_table

    results = run_predict(run, texts, k=top_k)
    progress.emit(results, predictions_table([r["text"] for r in results], [r["top"] for r in results], "text"))
