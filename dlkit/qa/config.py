"""Settings of `dlkit qa train` (no torch import here: the CLI reads it for --help)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlkit.core.config import ShardingConfig, opt, shared
from dlkit.core.errors import ConfigError


@dataclass
class WindowConfig:
    """How a long context becomes overlapping windows, and how spans are read back out of them."""

    max_length: int = opt(384, "Tokens per window (question + context + special tokens).")
    doc_stride: int = opt(128, "Tokens shared by consecutive windows of one context; must be < --max-length.")
    max_answer_length: int = opt(30, "Longest answer span, in tokens, considered when decoding.")
    n_best: int = opt(20, "Start and end candidates per window kept when decoding.")

    def validate_windows(self) -> None:
        for name in ("max_length", "max_answer_length", "n_best"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(self, name)})")
        if self.doc_stride < 0:
            raise ConfigError(f"--doc-stride must be >= 0 (got {self.doc_stride})")
        if self.doc_stride >= self.max_length:
            raise ConfigError(f"--doc-stride ({self.doc_stride}) must be smaller than --max-length "
                              f"({self.max_length}): it is the overlap between consecutive windows")


@dataclass
class QAConfig(WindowConfig, ShardingConfig):
    """`dlkit qa train`: an encoder plus a start/end span head, trained on SQuAD-format data."""

    data: str = opt("builtin:qa-synthetic", "SQuAD v1/v2 JSON, JSONL/CSV, a folder of splits, a Hub dataset id, "
                    "or builtin:qa-synthetic.")
    model: str = opt("builtin:tiny-bert", "Encoder: builtin:tiny-bert, a local save_pretrained folder, or a Hub id "
                     "(a BERT-style encoder; ParsBERT for Persian, see the example above).")
    head: Literal["linear", "dropout-linear"] = opt("dropout-linear", "Span head: a linear layer to start/end "
                                                    "logits, or dropout (--head-dropout) then linear.")
    head_dropout: float = opt(0.2, "Dropout before the span head's linear layer (--head dropout-linear).")
    epochs: int = opt(2, "Passes over the training windows.")
    batch_size: int = opt(16, "Windows per micro-batch per process.")
    lr: float = opt(0.0, "Peak learning rate; 0 = auto: 3e-3 for builtin:tiny-bert (trained from scratch), "
                    "3e-5 for a pretrained encoder.")
    weight_decay: float = opt(0.01, "AdamW weight decay on weights with >= 2 dims.")
    warmup: float = shared("warmup", 0.1)
    val_fraction: float = opt(0.1, "Share of a single --data file held out for validation (by context).")
    max_eval_examples: int = opt(0, "Evaluate EM/F1 during training on at most this many questions; 0 = all.")
    strict: bool = opt(False, "Fail on the first bad example or answer_start off its answer, instead of skipping "
                              "and counting it or repairing the offset.")
    trust_remote_code: bool = opt(False, "Allow model code from the Hub repository (off by default).")

    def validate(self) -> None:
        if self.lr == 0:
            self.lr = 3e-3 if self.model == "builtin:tiny-bert" else 3e-5
        super().validate()
        self.validate_windows()
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"--head-dropout must be in [0, 1) (got {self.head_dropout})")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1) (got {self.val_fraction})")
        if self.max_eval_examples < 0:
            raise ConfigError(f"--max-eval-examples must be >= 0 (got {self.max_eval_examples})")
