"""`dlkit charrnn train | eval | sample`: character-level language models on any text file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.charrnn.config import CharRNNConfig
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app, run_option

app = group_app("charrnn", "Character-level language models: RNN, GRU, LSTM (torch or from scratch), transformer.",
                extra="charrnn")


@config_command(app, CharRNNConfig)
def train(cfg: CharRNNConfig) -> None:
    """Train a character-level LM on a text; logs loss and bits per character, samples text at each eval.

    Example: [bold]dlkit charrnn train --data builtin:text --arch transformer --max-steps 300[/bold]
    """
    from dlkit.charrnn.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


@app.command()
def sample(
    run: Annotated[Path, run_option()],
    prompt: Annotated[str, typer.Option(help="Text to continue (default: a newline).")] = "",
    num_chars: Annotated[int, typer.Option(help="Characters to generate after the prompt.")] = 500,
    temperature: Annotated[float, typer.Option(help="Softmax temperature, > 0: lower is more conservative.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only among the k likeliest characters.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
) -> None:
    """Stream text sampled from a trained run to stdout.

    Example: [bold]dlkit charrnn sample --run runs/charrnn/demo --prompt "ROMEO:" --num-chars 300 --top-k 10[/bold]
    """
    from dlkit.charrnn.evaluate import sample as run_sample

    pieces = run_sample(run, prompt, num_chars, temperature, top_k, seed)
    if progress.MODE.json:
        progress.emit({"run": str(run), "prompt": prompt, "text": "".join(pieces)})
        return
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@app.command(name="eval")
def evaluate(
    run: Annotated[Path, run_option()],
    data: Annotated[Optional[str], typer.Option(help="Text file (or builtin:NAME) to score; "  # noqa: UP045
                                                "default: the run's validation split.")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Encoding of --data; default: the run's.")] = None,  # noqa: UP045
    batch_size: Annotated[int, typer.Option(help="Blocks per forward pass.")] = 64,
    split: Annotated[Optional[str], typer.Option(help="Without --data: validation (default, the held-out end "  # noqa: UP045
                                                 "of the text) or train (only when asked; train_* metrics).")
                     ] = None,
) -> None:
    """Loss (nats), bits per character and perplexity of a trained run on its held-out validation text (or a
    --data text); saved to eval.json.

    Example: [bold]dlkit charrnn eval --run runs/charrnn/demo --data held_out.txt[/bold]
    """
    from dlkit.charrnn.evaluate import evaluate as run_evaluate

    result = run_evaluate(run, data, encoding, batch_size, split)
    progress.emit(result, progress.metrics_table(result, title=f"charrnn eval: {result['data']}, "
                                                               f"{result['split_size']} characters"))
