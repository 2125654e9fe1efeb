"""`dlkit caption`: prepare Flickr8k-style data, train four captioning architectures, predict, evaluate."""

from __future__ import annotations

from dlkit.caption.config import CaptionConfig, CompareConfig, EvalConfig, PredictConfig, PrepareConfig
from dlkit.core.commands import config_command, group_app

app = group_app(
    "caption",
    "Image captioning: Flickr8k-style data, CNN-LSTM, soft attention, CNN-Transformer, "
    "ViT-GPT2; BLEU/ROUGE/CIDEr/BERTScore.",
    extra="caption",
    requires=("torchvision", "transformers"),
)


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Clean captions, build vocab.json, split 80/10/10 by image, write plots and print statistics.

    Example: [bold]dlkit caption prepare --data ~/flickr8k --min-freq 5[/bold]
    """
    from dlkit.caption.prepare import prepare as run_prepare
    from dlkit.core import progress

    stats = run_prepare(cfg)
    progress.emit(stats, progress.metrics_table(stats, title="caption data"))


@config_command(app, CaptionConfig)
def train(cfg: CaptionConfig) -> None:
    """Train a captioner (lstm, attention, transformer or vit-gpt2) and write a run folder.

    Example: [bold]dlkit caption train --arch attention --data builtin:shapes --epochs 5[/bold]
    ViT encoder + GPT-2 decoder from the Hub: [bold]dlkit caption train --arch vit-gpt2 --model
    google/vit-base-patch16-224-in21k+distilgpt2 --data ~/flickr8k[/bold]
    """
    from dlkit.caption.task import train as run_train
    from dlkit.core import progress

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics, title="caption train"))


@config_command(app, PredictConfig)
def predict(cfg: PredictConfig) -> None:
    """Caption images with a trained run; captions are printed and saved to samples/predictions.csv.

    Example: [bold]dlkit caption predict --run runs/caption/attention dog.jpg --beam-size 3 --heatmap[/bold]
    """
    from dlkit.caption.evaluate import predict as run_predict
    from dlkit.core import progress

    rows = run_predict(cfg)
    progress.emit(rows, "\n".join(f"{r['image']}: {r['caption']}" for r in rows))


@config_command(app, EvalConfig)
def evaluate(cfg: EvalConfig) -> None:
    """BLEU-1..4, ROUGE-1/2/L, CIDEr-D (and BERTScore) on the run's held-out test split (or --split);
    writes eval.json and plots.

    Example: [bold]dlkit caption eval --run runs/caption/attention --beam-size 3 --limit 300[/bold]
    """
    from dlkit.caption.evaluate import evaluate as run_evaluate
    from dlkit.core import progress

    metrics = run_evaluate(cfg)
    progress.emit(
        metrics,
        progress.metrics_table(metrics, title=f"caption eval ({metrics['split']}, {metrics['split_size']} images)"),
    )


@config_command(app, CompareConfig)
def compare(cfg: CompareConfig) -> None:
    """The same test images captioned by several runs side by side: compare.md/.html (image, references, each
    run's caption and its BLEU-4), plots/compare.png, and plots/disagreements.png where the runs differ most.

    Example: [bold]dlkit caption compare runs/caption/lstm runs/caption/attention --limit 20 --output-dir runs/caption/lstm-vs-attention[/bold]
    """  # noqa: E501
    from dlkit.caption.compare import compare as run_compare
    from dlkit.core import progress

    result = run_compare(cfg)
    progress.emit(
        result,
        progress.metrics_table(
            {f"{k} BLEU-4": v for k, v in result["bleu4"].items()},
            title=f"caption compare ({result['images']} test images)",
        ),
    )
