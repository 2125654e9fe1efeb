"""`dlkit vit`: image classification with ViT/DeiT: LoRA, last-block, linear-probe or full fine-tuning."""

from __future__ import annotations

from pathlib import Path

from dlkit.core import progress
from dlkit.core.classifier_cli import classifier_commands
from dlkit.core.commands import config_command, group_app
from dlkit.vit.config import VitConfig

app = group_app("vit", "Fine-tune ViT/DeiT image classifiers: LoRA, last block, linear probe or full.",
                extra="vit", requires=("transformers", "peft", "torchvision"))


@config_command(app, VitConfig)
def train(cfg: VitConfig) -> None:
    """Fine-tune an image classifier; labels come from the data (folder names or a ClassLabel column).

    Example: [bold]dlkit vit train --model builtin:tiny-vit --data builtin:digits --method lora[/bold]
    """
    from dlkit.vit.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


classifier_commands(
    app, "dlkit.vit.evaluate", "image", "image",
    (Path, "Image files (any mode: grayscale/RGBA are converted)."),
    eval_doc="""Accuracy, top-5, per-class report (eval/per_class.csv), confusion matrix PNG and the most confident
    mistakes, on the run's held-out validation split; test_* metrics are merged into metrics.json.

    Example: [bold]dlkit vit eval --run runs/vit/lora[/bold]
    """,
    predict_doc="""The top labels with probabilities for each image (a table, or a list with --json).

    Example: [bold]dlkit vit predict --run runs/vit/lora cat.jpg dog.png[/bold]
    """)
