"""Settings of the charrnn commands. No torch here: the CLI imports this module for --help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.builtin import listed
from dlkit.core.config import TrainConfig, opt, run_field, shared
from dlkit.core.errors import ConfigError

Arch = Literal["rnn", "gru", "lstm", "lstm-scratch", "transformer"]


@dataclass
class CharRNNConfig(TrainConfig):
    data: str = opt("builtin:markov", f"Text: {listed('charrnn', 'data')}, or a local text file.", path="data")
    model: str = opt(
        "scratch",
        "'scratch' (--arch and the size flags pick the model), or a charrnn run folder to "
        "fine-tune on --data, keeping its architecture and vocabulary.",
        path="run",
        run_of="charrnn",
    )
    arch: Arch = opt("lstm", "Architecture: torch RNN/GRU/LSTM, dlkit.nn's LSTM (lstm-scratch) or a GPT.")
    block_size: int = opt(64, "Characters per training block (the context a transformer sees).", min=1)
    hidden_size: int = opt(128, "Hidden size of the RNN, or the width of the transformer.", min=1)
    num_layers: int = opt(2, "Stacked RNN layers or transformer blocks.", min=1)
    num_heads: int = opt(4, "Attention heads (transformer only); must divide --hidden-size.", min=1)
    dropout: float = opt(0.0, "Dropout between layers (RNN) or in every block (transformer).", min=0, below=1)
    positional: Literal["learned", "sinusoidal"] = opt("learned", "Position encoding of the transformer.")
    tie_weights: bool = opt(True, "Share the input embedding and the output layer (Press & Wolf, 2017).")
    attention: Literal["scratch", "sdpa"] = opt(
        "scratch",
        "Transformer attention: dlkit.nn's from-scratch formula, or sdpa (torch's fused kernel: same numbers, faster).",
    )
    encoding: str = opt("utf-8", "Text encoding of --data (e.g. latin-1, cp1252).")
    val_fraction: float = opt(0.1, "Fraction of the text (its end) held out for validation.", above=0, below=1)
    blocks_per_epoch: int = opt(
        0, "Random blocks drawn per epoch; 0 = training characters / block size, but at least 100 batches.", min=0
    )
    max_val_blocks: int = opt(512, "Validation blocks per evaluation, evenly spread; 0 = all.", min=0)
    sample_chars: int = opt(300, "Characters sampled into samples/ at each evaluation; 0 = none.", min=0)
    sample_prompt: str = opt("", "Prompt of those samples (default: the first character of the text).")
    # overridden shared defaults: small character models like a large learning rate and cosine decay
    batch_size: int = opt(32, "Blocks per micro-batch per process.", min=1)
    lr: float = shared("lr", 3e-3)
    epochs: int = opt(5, "Passes over the training set (an epoch is --blocks-per-epoch random blocks).", min=1)
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    warmup: float = shared("warmup", 0.02)

    command: ClassVar[tuple[str, str]] = ("charrnn", "train")

    def validate(self) -> None:
        super().validate()
        if self.arch == "transformer" and self.hidden_size % self.num_heads:
            raise ConfigError(f"--hidden-size {self.hidden_size} must be divisible by --num-heads {self.num_heads}")
        check_encoding(self.encoding)


def check_encoding(encoding: str) -> None:
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"--encoding {encoding!r} is not a known text encoding (try utf-8, latin-1, cp1252)"
        ) from None


@dataclass
class SampleConfig:
    """`dlkit charrnn sample`."""

    run: str = run_field("charrnn")
    prompt: str = opt("", "Text to continue (default: a newline).")
    num_chars: int = opt(500, "Characters to generate after the prompt.", min=0)
    temperature: float = opt(1.0, "Softmax temperature, > 0: lower is more conservative.", above=0)
    top_k: int | None = opt(None, "Sample only among the k likeliest characters.", min=0)
    seed: int = opt(0, "Seed of the sampler.")

    command: ClassVar[tuple[str, str]] = ("charrnn", "sample")


@dataclass
class EvalConfig:
    """`dlkit charrnn eval`."""

    run: str = run_field("charrnn")
    data: str | None = opt(
        None, "Text file (or builtin:NAME) to score; default: the run's validation split.", path="data"
    )
    encoding: str | None = opt(None, "Encoding of --data; default: the run's.", from_run="encoding")
    batch_size: int = opt(64, "Blocks per forward pass.", min=1)
    split: str | None = opt(
        None,
        "Without --data: validation (default, the held-out end of the text) or train "
        "(only when asked; train_* metrics).",
    )

    command: ClassVar[tuple[str, str]] = ("charrnn", "eval")

    def validate(self) -> None:
        if self.encoding is not None:
            check_encoding(self.encoding)
