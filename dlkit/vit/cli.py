"""`dlkit vit`: image classification with ViT/DeiT: LoRA, last-block, linear-probe or full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlkit.core import progress
from dlkit.core.classifier_cli import classifier_commands, sweep_command
from dlkit.core.commands import config_command, group_app
from dlkit.vit.config import VitConfig

app = group_app("vit", "Fine-tune ViT/DeiT image classifiers: LoRA, last block, linear probe or full.",
                extra="vit", requires=("transformers", "peft", "torchvision"))


@app.command()
def prepare(
    data: Annotated[str, typer.Option(help="ImageFolder (CLASS/IMAGE, optionally under train/, validation/ and "
                                      "test/), a Hub dataset id or builtin:digits.")] = "builtin:digits",
    output_dir: Annotated[Path, typer.Option(help="Where plots/ and stats.json go.")] = Path("runs/vit/prepare"),
    val_fraction: Annotated[float, typer.Option(help="Held-out share per class of train when there is no "
                                                "validation split (as `vit train`).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the holdout and of the sample grid.")] = 0,
) -> None:
    """Class names and counts per split (the split `vit train` uses), a grid of random labelled images
    (plots/samples.png), the image-size histogram and images per class.

    Example: [bold]dlkit vit prepare --data ~/datasets/flowers --output-dir runs/vit/prepare-flowers[/bold]
    """
    from dlkit.core.image_preview import PreviewSplit, counts_table, preview
    from dlkit.vit.data import load_image_data

    loaded = load_image_data(VitConfig(data=data, val_fraction=val_fraction, seed=seed))
    splits = [PreviewSplit("train", loaded.train.labels, loaded.train.load),
              PreviewSplit(f"validation ({loaded.val_split})", loaded.val.labels, loaded.val.load)]
    if loaded.test is not None:
        splits.append(PreviewSplit(f"test ({loaded.test_split})", loaded.test.labels, loaded.test.load))
    stats = preview(splits, loaded.label_names, output_dir, data, seed)
    progress.info(f"wrote {output_dir}/plots/samples.png, image_sizes.png, class_counts.png and stats.json")
    progress.emit(stats, counts_table(stats))


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
    mistakes, on the run's held-out test split (validation when the data has no test split); test_* metrics are
    merged into metrics.json.

    Example: [bold]dlkit vit eval --run runs/vit/lora[/bold]
    """,
    predict_doc="""The top labels with probabilities for each image (a table, or a list with --json).

    Example: [bold]dlkit vit predict --run runs/vit/lora cat.jpg dog.png[/bold]
    """)
sweep_command(app, "vit", VitConfig, "dlkit.vit.evaluate",
              "dlkit vit sweep --grid method=lora,last-block --grid lr=1e-3,3e-3 --train-config vit.yaml")
