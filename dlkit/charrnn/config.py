"""Settings of `dlkit charrnn train`. No torch here: the CLI imports this module for --help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlkit.core.config import TrainConfig, opt, shared
from dlkit.core.errors import ConfigError

Arch = Literal["rnn", "gru", "lstm", "lstm-scratch", "transformer"]


@dataclass
class CharRNNConfig(TrainConfig):
    data: str = opt("builtin:markov", "Text: builtin:markov, builtin:text, or a local text file.")
    model: str = opt("scratch", "'scratch' (--arch and the size flags pick the model), or a charrnn run folder to "
                                "fine-tune on --data, keeping its architecture and vocabulary.")
    arch: Arch = opt("lstm", "Architecture: torch RNN/GRU/LSTM, dlkit.nn's LSTM (lstm-scratch) or a GPT.")
    block_size: int = opt(64, "Characters per training block (the context a transformer sees).")
    hidden_size: int = opt(128, "Hidden size of the RNN, or the width of the transformer.")
    num_layers: int = opt(2, "Stacked RNN layers or transformer blocks.")
    num_heads: int = opt(4, "Attention heads (transformer only); must divide --hidden-size.")
    dropout: float = opt(0.0, "Dropout between layers (RNN) or in every block (transformer).")
    positional: Literal["learned", "sinusoidal"] = opt("learned", "Position encoding of the transformer.")
    tie_weights: bool = opt(True, "Share the input embedding and the output layer (Press & Wolf, 2017).")
    attention: Literal["scratch", "sdpa"] = opt("scratch", "Transformer attention: dlkit.nn's from-scratch formula, "
                                                "or sdpa (torch's fused kernel: same numbers, faster).")
    encoding: str = opt("utf-8", "Text encoding of --data (e.g. latin-1, cp1252).")
    val_fraction: float = opt(0.1, "Fraction of the text (its end) held out for validation.")
    blocks_per_epoch: int = opt(0, "Random blocks drawn per epoch; 0 = training characters / block size, "
                                   "but at least 100 batches.")
    max_val_blocks: int = opt(512, "Validation blocks per evaluation, evenly spread; 0 = all.")
    sample_chars: int = opt(300, "Characters sampled into samples/ at each evaluation; 0 = none.")
    sample_prompt: str = opt("", "Prompt of those samples (default: the first character of the text).")
    # overridden shared defaults: small character models like a large learning rate and cosine decay
    batch_size: int = opt(32, "Blocks per micro-batch per process.")
    lr: float = shared("lr", 3e-3)
    epochs: int = opt(5, "Passes over the training set (an epoch is --blocks-per-epoch random blocks).")
    scheduler: Literal["constant", "linear", "cosine"] = shared("scheduler", "cosine")
    warmup: float = shared("warmup", 0.02)

    def validate(self) -> None:
        super().validate()
        for name in ("block_size", "hidden_size", "num_layers", "num_heads"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {value})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be between 0 and 1 (got {self.val_fraction})")
        for name in ("blocks_per_epoch", "max_val_blocks", "sample_chars"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (got {value})")
        if self.arch == "transformer" and self.hidden_size % self.num_heads:
            raise ConfigError(f"--hidden-size {self.hidden_size} must be divisible by --num-heads {self.num_heads}")
        check_encoding(self.encoding)


def check_encoding(encoding: str) -> None:
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r} is not a known text encoding (try utf-8, latin-1, cp1252)") \
            from None
