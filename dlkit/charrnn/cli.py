"""`dlkit charrnn train | eval | sample`: character-level language models on any text file."""

from __future__ import annotations

import sys

from dlkit.charrnn.config import CharRNNConfig, EvalConfig, SampleConfig
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app

app = group_app(
    "charrnn", "Character-level language models: RNN, GRU, LSTM (torch or from scratch), transformer.", extra="charrnn"
)


@config_command(app, CharRNNConfig)
def train(cfg: CharRNNConfig) -> None:
    """Train a character-level LM on a text; logs loss and bits per character, samples text at each eval.

    Example: [bold]dlkit charrnn train --data builtin:text --arch transformer --max-steps 300[/bold]
    """
    from dlkit.charrnn.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


@config_command(app, SampleConfig)
def sample(cfg: SampleConfig) -> None:
    """Stream text sampled from a trained run to stdout.

    Example: [bold]dlkit charrnn sample --run runs/charrnn/demo --prompt "ROMEO:" --num-chars 300 --top-k 10[/bold]
    """
    from dlkit.charrnn.evaluate import sample as run_sample

    pieces = run_sample(cfg)
    if progress.MODE.json:
        progress.emit({"run": cfg.run, "prompt": cfg.prompt, "text": "".join(pieces)})
        return
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@config_command(app, EvalConfig)
def evaluate(cfg: EvalConfig) -> None:
    """Loss (nats), bits per character and perplexity of a trained run on its held-out validation text (or a
    --data text); saved to eval.json.

    Example: [bold]dlkit charrnn eval --run runs/charrnn/demo --data held_out.txt[/bold]
    """
    from dlkit.charrnn.evaluate import evaluate as run_evaluate

    result = run_evaluate(cfg)
    progress.emit(
        result,
        progress.metrics_table(result, title=f"charrnn eval: {result['data']}, {result['split_size']} characters"),
    )
