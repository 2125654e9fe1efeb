"""`dlkit vit`: image classification with ViT/DeiT: LoRA, last-block, linear-probe or full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.core import progress
from dlkit.core.commands import config_command, group_app, run_option
from dlkit.core.run import is_main_process
from dlkit.vit.config import VitConfig

app = group_app("vit", "Fine-tune ViT/DeiT image classifiers: LoRA, last block, linear probe or full.",
                extra="vit", requires=("transformers", "peft", "torchvision"))


@config_command(app, VitConfig)
def train(cfg: VitConfig) -> None:
    """Fine-tune an image classifier; labels come from the data (folder names or a ClassLabel column).

    Example: [bold]dlkit vit train --model builtin:tiny-vit --data builtin:digits --method lora[/bold]
    """
    from dlkit.vit.task import train as run_training

    metrics = run_training(cfg)
    if is_main_process():  # under torchrun every process returns the same metrics
        progress.emit(metrics, progress.metrics_table(metrics))


@app.command("eval")
def evaluate(
    run: Annotated[Path, run_option()],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 64,
    split: Annotated[Optional[str], typer.Option(help="Split to score: validation (default: the images held "  # noqa: UP045
                                                 "out of training) or train (only when asked; train_* metrics).")
                     ] = None,
) -> None:
    """Accuracy, top-5, per-class report (eval/per_class.csv), confusion matrix PNG and the most confident
    mistakes, on the run's held-out validation split; test_* metrics are merged into metrics.json.

    Example: [bold]dlkit vit eval --run runs/vit/lora[/bold]
    """
    from dlkit.core.classification import show_evaluation
    from dlkit.vit.task import evaluate_run

    show_evaluation(run, evaluate_run(run, batch_size=batch_size, split=split), "image")


@app.command()
def predict(
    run: Annotated[Path, run_option()],
    images: Annotated[list[Path], typer.Argument(help="Image files (any mode: grayscale/RGBA are converted).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per image.")] = 5,
) -> None:
    """The top labels with probabilities for each image (a table, or a list with --json).

    Example: [bold]dlkit vit predict --run runs/vit/lora cat.jpg dog.png[/bold]
    """
    from dlkit.core.classification import predictions_table
    from dlkit.vit.task import predict as run_predict

    results = run_predict(run, images, k=top_k)
    progress.emit(results, predictions_table([r["image"] for r in results], [r["top"] for r in results], "image"))
