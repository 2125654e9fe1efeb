"""Settings of the qa commands (no torch import here: the CLI reads them for --help)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.core.config import REQUIRED, ShardingConfig, opt, run_field, shared
from dlkit.core.errors import ConfigError

DATA_HELP = "SQuAD v1/v2 JSON, JSONL/CSV, a folder of splits, a Hub dataset id, or builtin:qa-synthetic."
STRICT_HELP = (
    "Fail on the first bad question or answer_start off its answer, instead of skipping and counting it or "
    "repairing the offset."
)


@dataclass
class WindowConfig:
    """How a long context becomes overlapping windows, and how spans are read back out of them."""

    max_length: int = opt(384, "Tokens per window (question + context + special tokens).", min=1)
    doc_stride: int = opt(128, "Tokens shared by consecutive windows of one context; must be < --max-length.", min=0)
    max_answer_length: int = opt(30, "Longest answer span, in tokens, considered when decoding.", min=1)
    n_best: int = opt(20, "Start and end candidates per window kept when decoding.", min=1)

    def validate_windows(self) -> None:
        if self.doc_stride >= self.max_length:
            raise ConfigError(
                f"--doc-stride ({self.doc_stride}) must be smaller than --max-length "
                f"({self.max_length}): it is the overlap between consecutive windows"
            )


@dataclass
class QAConfig(WindowConfig, ShardingConfig):
    """`dlkit qa train`: an encoder plus a start/end span head, trained on SQuAD-format data."""

    data: str = opt("builtin:qa-synthetic", DATA_HELP, path="data")
    model: str = opt(
        "builtin:tiny-bert",
        "Encoder: builtin:tiny-bert, a local save_pretrained folder, or a Hub id "
        "(a BERT-style encoder; ParsBERT for Persian, see the example above).",
        path="model",
    )
    head: Literal["linear", "dropout-linear"] = opt(
        "dropout-linear", "Span head: a linear layer to start/end logits, or dropout (--head-dropout) then linear."
    )
    head_dropout: float = opt(
        0.2, "Dropout before the span head's linear layer (--head dropout-linear).", min=0, below=1
    )
    epochs: int = opt(2, "Passes over the training windows.", min=1)
    batch_size: int = opt(16, "Windows per micro-batch per process.", min=1)
    lr: float = opt(
        0.0,
        "Peak learning rate; 0 = auto: 3e-3 for builtin:tiny-bert (trained from scratch), "
        "3e-5 for a pretrained encoder.",
        min=0,
    )
    weight_decay: float = opt(0.01, "AdamW weight decay on weights with >= 2 dims.", min=0)
    warmup: float = shared("warmup", 0.1)
    val_fraction: float = opt(
        0.1, "Share of a single --data file held out for validation (by context).", above=0, below=1
    )
    max_eval_examples: int = opt(0, "Evaluate EM/F1 during training on at most this many questions; 0 = all.", min=0)
    strict: bool = opt(
        False,
        "Fail on the first bad example or answer_start off its answer, instead of skipping "
        "and counting it or repairing the offset.",
    )
    trust_remote_code: bool = opt(False, "Allow model code from the Hub repository (off by default).")

    command: ClassVar[tuple[str, str]] = ("qa", "train")

    def validate(self) -> None:
        if self.lr == 0:
            self.lr = 3e-3 if self.model == "builtin:tiny-bert" else 3e-5
        super().validate()
        self.validate_windows()


@dataclass
class PrepareConfig:
    """`dlkit qa prepare`."""

    data: str = opt("builtin:qa-synthetic", DATA_HELP, path="data")
    model: str = opt(
        "builtin:tiny-bert",
        "Model whose tokenizer measures lengths: builtin:tiny-bert, a folder or a Hub id.",
        path="model",
    )
    max_length: int = opt(384, "Tokens per window (question + context + special tokens).", min=1)
    doc_stride: int = opt(128, "Tokens shared by consecutive windows; must be < --max-length.", min=0)
    output_dir: str = opt("runs/qa/prepare", "Where stats.json, plots/ and the checked splits go.", path="output")
    strict: bool = opt(False, STRICT_HELP)
    overwrite: bool = opt(False, "Replace what an earlier `qa prepare` wrote there (only its own files).", saved=False)

    command: ClassVar[tuple[str, str]] = ("qa", "prepare")

    def validate(self) -> None:
        WindowConfig(max_length=self.max_length, doc_stride=self.doc_stride).validate_windows()


@dataclass
class EvalConfig:
    """`dlkit qa eval`."""

    run: str = run_field("qa")
    data: str | None = opt(
        None, "Data to score (a file, folder, Hub id or builtin:); default: the run's --data.", path="data"
    )
    split: str | None = opt(
        None,
        "Split to score: test, validation or train; default: the run's held-out split: "
        "test if the data has one, else the validation questions held out in training. train only "
        "when asked.",
    )
    batch_size: int = opt(32, "Windows per forward pass.", min=1)
    max_answer_length: int | None = opt(
        None, "Longest answer in tokens; default: the run's.", min=1, from_run="max_answer_length"
    )
    n_best: int | None = opt(None, "Start/end candidates per window; default: the run's.", min=1, from_run="n_best")
    worst: int = opt(5, "How many lowest-F1 questions to list.", min=0)
    strict: bool = opt(False, STRICT_HELP)

    command: ClassVar[tuple[str, str]] = ("qa", "eval")


@dataclass
class PredictConfig:
    """`dlkit qa predict`."""

    run: str = run_field("qa")
    context: str = opt(
        REQUIRED,
        "The passage: text, or a path to a UTF-8 text file.",
        path="text_or_file",
        example="Tehran is the capital of Iran.",
    )
    question: str = opt(REQUIRED, "The question to answer from the passage.", example="What is the capital of Iran?")
    top_k: int = opt(1, "How many candidate answers to show.", min=1)

    command: ClassVar[tuple[str, str]] = ("qa", "predict")
