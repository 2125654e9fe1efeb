"""`dlkit clip zeroshot | templates | fix-class | coop | probe | train | retrieve`: CLIP models from open_clip
(pretrained tags or random weights), prompt templates, learnable prompts, linear probes, training from scratch."""

from __future__ import annotations

from dlkit.clip.config import (
    ClipTrainConfig,
    CoopConfig,
    FixClassConfig,
    PrepareConfig,
    ProbeConfig,
    RetrievalEvalConfig,
    RetrieveConfig,
    TemplatesConfig,
    ZeroShotConfig,
)
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app

app = group_app(
    "clip",
    "CLIP: zero-shot classification, prompt templates, CoOp, linear probes, training from "
    "scratch and text-to-image retrieval (open_clip).",
    extra="clip",
    requires=("open_clip", "torch"),
)


def _table(title: str, rows: list[dict], columns: list[str]):
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("set", "template", "class") else "right")
    for row in rows:
        table.add_row(*(progress.format_value(row.get(c, "")) for c in columns))
    return table


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Class names (as the prompts will say them) and counts per split folder, a grid of random labelled
    images (plots/samples.png), the image-size histogram and images per class.

    Example: [bold]dlkit clip prepare --data ~/dogs --output-dir runs/clip/prepare-dogs[/bold]
    """
    from dlkit.classify.preview import counts_table
    from dlkit.clip.prepare import prepare as run_prepare

    stats = run_prepare(cfg)
    progress.emit(stats, counts_table(stats))


@config_command(app, ZeroShotConfig)
def zeroshot(cfg: ZeroShotConfig) -> None:
    """Zero-shot classification of an image folder from prompt templates: top-1/top-5, per-class report
    (CSV), confusion matrix and the worst classes.

    Example: [bold]dlkit clip zeroshot --model builtin:tiny-clip --data builtin:shape-classes[/bold] (offline)
    Real weights (Stanford Dogs test images, one folder per breed): [bold]dlkit clip zeroshot --model convnext_base
    --pretrained laion400m_s13b_b51k --data ~/dogs/test --templates dogs[/bold]
    """
    from rich.console import Group

    from dlkit.clip.evaluate import zeroshot as run_zeroshot

    metrics = run_zeroshot(cfg)
    worst = _table("worst classes (F1)", metrics["worst_classes"], ["class", "f1", "precision", "recall", "support"])
    title = f"clip zeroshot ({metrics['split']}, {metrics['split_size']} images)"
    progress.emit(metrics, Group(progress.metrics_table(metrics, title=title), worst))


@config_command(app, TemplatesConfig)
def templates(cfg: TemplatesConfig) -> None:
    """Compare template sets (simple, imagenet80, dogs or files) on the same cached image features.

    Example: [bold]dlkit clip templates --model convnext_base --pretrained laion400m_s13b_b51k --data ~/dogs
    --sets simple,imagenet80,dogs[/bold]
    """
    from dlkit.clip.evaluate import templates as run_templates

    metrics = run_templates(cfg)
    progress.emit(metrics, _table("template sets", metrics["rows"], ["set", "templates", "top1", "top5", "macro_f1"]))


@config_command(app, FixClassConfig)
def fix_class(cfg: FixClassConfig) -> None:
    """For one class (e.g. the worst), score candidate templates for that class only: its F1 and the overall
    accuracy for each, and the best one.

    Example: [bold]dlkit clip fix-class --model convnext_base --pretrained laion400m_s13b_b51k --data ~/dogs
    --class "walker hound" --candidates walker.txt[/bold]
    """
    from dlkit.clip.evaluate import fix_class as run_fix_class

    metrics = run_fix_class(cfg)
    progress.emit(
        metrics,
        _table(
            f"templates for class {metrics['class']!r} ({metrics['verdict']})",
            metrics["rows"],
            ["template", "class_f1", "class_precision", "class_recall", "top1"],
        ),
    )


@config_command(app, CoopConfig)
def coop(cfg: CoopConfig) -> None:
    """Learn class representations on the train split with the image tower frozen, and compare test
    accuracy with zero-shot: --mode embedding (one vector per class) or --mode prompt (CoOp context tokens).

    Example: [bold]dlkit clip coop --mode prompt --model convnext_base --pretrained laion400m_s13b_b51k
    --data ~/dogs --n-ctx 4 --epochs 20[/bold]
    """
    from dlkit.clip.task import coop as run_coop

    metrics = run_coop(cfg)
    progress.emit(metrics, progress.metrics_table(metrics, title=f"clip coop --mode {cfg.mode}"))


@config_command(app, ProbeConfig)
def probe(cfg: ProbeConfig) -> None:
    """Linear probe: the frozen image tower's cached features and one linear layer trained on them; test
    accuracy and the per-class report.

    Example: [bold]dlkit clip probe --model RN50 --pretrained openai --data ~/cifar10 --epochs 30[/bold]
    """
    from dlkit.clip.task import probe as run_probe

    metrics = run_probe(cfg)
    progress.emit(metrics, progress.metrics_table(metrics, title="clip probe"))


@config_command(app, ClipTrainConfig)
def train(cfg: ClipTrainConfig) -> None:
    """Train CLIP from scratch on image-caption pairs (symmetric contrastive loss, learnable temperature);
    recall@1/5/10 in both directions on the validation images while training, and on the test images at the end.

    Example: [bold]dlkit clip train --data ~/flickr8k --image-encoder rn50 --epochs 30 --batch-size 128[/bold]
    """
    from dlkit.clip.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics, title="clip train"))


@config_command(app, RetrievalEvalConfig, name="eval-retrieval")
def eval_retrieval(cfg: RetrievalEvalConfig) -> None:
    """Recall@1/5/10 of text->image and image->text retrieval on a captions dataset's test split (or --split), for
    a `clip train` run or any open_clip model.

    Example: [bold]dlkit clip eval-retrieval --run runs/clip/flickr[/bold] (its own test images)
    Pretrained (Flickr8k test images): [bold]dlkit clip eval-retrieval --model ViT-B-32 --pretrained openai
    --data ~/flickr8k[/bold]
    """
    from dlkit.clip.evaluate import eval_retrieval as run_eval_retrieval

    result = run_eval_retrieval(cfg)
    shown = {k: v for k, v in result.items() if not isinstance(v, dict)}
    progress.emit(
        result,
        progress.metrics_table(shown, title=f"clip eval-retrieval ({result['split']}, {result['split_size']} images)"),
    )


@config_command(app, RetrieveConfig)
def retrieve(cfg: RetrieveConfig) -> None:
    """Text-to-image retrieval: the k images closest to the query, as a PNG grid with scores and JSON.

    Example: [bold]dlkit clip retrieve --run runs/clip/flickr --images ~/flickr8k/Images --query "a dog" -k 9
    --output-dir runs/clip/retrieve-dog[/bold]
    """
    from dlkit.clip.retrieve import retrieve as run_retrieve

    result = run_retrieve(cfg)
    rows = [{"rank": i + 1, "score": r["score"], "image": r["image"]} for i, r in enumerate(result["results"])]
    progress.emit(result, _table(f"top {len(rows)} for {cfg.query!r}", rows, ["rank", "score", "image"]))
