"""`dlkit vit`: image classification with ViT/DeiT: LoRA, last-block, linear-probe or full fine-tuning."""

from __future__ import annotations

from dlkit.classify.commands import classifier_commands, sweep_command
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app
from dlkit.vit.config import EvalConfig, ExportConfig, PlanConfig, PredictConfig, PrepareConfig, VitConfig

app = group_app(
    "vit",
    "Fine-tune ViT/DeiT image classifiers: LoRA, last block, linear probe or full.",
    extra="vit",
    requires=("transformers", "peft", "torchvision"),
)


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Class names and counts per split (the split `vit train` uses), a grid of random labelled images
    (plots/samples.png), the image-size histogram and images per class.

    Example: [bold]dlkit vit prepare --data ~/datasets/flowers --output-dir runs/vit/prepare-flowers[/bold]
    """
    from dlkit.classify.preview import counts_table
    from dlkit.vit.prepare import prepare as run_prepare

    stats = run_prepare(cfg)
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
    app,
    "dlkit.vit.evaluate",
    "image",
    EvalConfig,
    PredictConfig,
    eval_doc="""Accuracy, top-5, per-class report (eval/per_class.csv), confusion matrix PNG and the most confident
    mistakes, on the run's held-out test split (validation when the data has no test split); test_* metrics are
    merged into metrics.json.

    Example: [bold]dlkit vit eval --run runs/vit/lora[/bold]
    """,
    predict_doc="""The top labels with probabilities for each image (a table, or a list with --json).

    Example: [bold]dlkit vit predict --run runs/vit/lora cat.jpg dog.png[/bold]
    """,
)
sweep_command(
    app,
    "vit",
    VitConfig,
    "dlkit.vit.evaluate",
    EvalConfig,
    "dlkit vit sweep --grid method=lora,last-block --grid lr=1e-3,3e-3 --train-config vit.yaml",
)


@config_command(app, ExportConfig)
def export(cfg: ExportConfig) -> None:
    """The run's model as plain transformers weights (LoRA merged), loadable with
    AutoModelForImageClassification.from_pretrained; the run itself keeps only what trained.

    Example: [bold]dlkit vit export --run runs/vit/lora --out vit-lora-merged/[/bold]
    """
    from dlkit.vit.models import export as run_export

    result = run_export(cfg)
    progress.emit(result, progress.metrics_table(result, title="export"))


@config_command(app, PlanConfig)
def plan(cfg: PlanConfig) -> None:
    """Predicted peak memory per process of `vit train` with these settings, from the model's config.json alone
    (built on the meta device: no weights downloaded): weights, trainable parameters, gradients, optimizer states,
    activations and logits; whether it fits --gpu-memory (or the detected GPU) and the largest batch that does.

    Example: [bold]dlkit vit plan --model google/vit-base-patch16-224-in21k --method lora --num-classes 101 --batch-size 128 --gpu-memory 16[/bold]
    """  # noqa: E501
    from dlkit.vit.plan import plan as run_plan

    result = run_plan(cfg)
    progress.emit(result, progress.plan_table(result))
