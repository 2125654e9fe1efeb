"""Settings of the llm commands. No torch here: the CLI builds its flags from these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dlkit.core.config import ShardingConfig, opt, shared
from dlkit.core.errors import ConfigError
from dlkit.core.grid import SweepConfig

Format = Literal["auto", "sharegpt", "openai", "alpaca"]


@dataclass
class DataConfig:
    """What `prepare`, `train` and `eval` share about turning rows into training examples."""

    data: str = opt("builtin:instruct", "Conversations: builtin:instruct[-fa], a JSON/JSONL/CSV/parquet file or a "
                    "Hub dataset id (ShareGPT, OpenAI messages or alpaca rows).")
    model: str = opt("builtin:tiny-llama", "Base model: builtin:tiny-llama, builtin:tiny-gemma2, a local "
                     "save_pretrained folder or a Hub id (google/gemma-2-2b, meta-llama/Llama-3.2-3B).")
    format: Format = opt("auto", "Row format; auto-detected from the columns unless forced.")
    max_length: int = opt(512, "Tokens per conversation; a longer one is truncated (its prompt keeps its end; "
                          "counted) or dropped. Prompts at generation are cut to it too.")
    drop_long: bool = opt(False, "Drop conversations longer than --max-length instead of truncating them.")
    val_size: float = opt(0.1, "Validation share of the rows (a fraction < 1 or a row count).")
    test_size: float = opt(0.1, "Test share of the rows, used by `llm eval` for generation metrics.")
    split_seed: int = opt(0, "Seed of the train/val/test split.")
    limit: int | None = opt(None, "Use only the first N rows (quick trials on big datasets).")

    def validate_data(self) -> None:
        if self.max_length < 8:
            raise ConfigError(f"--max-length must be >= 8 (got {self.max_length})")
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (got {value})")
            if value >= 1 and value != int(value):
                raise ConfigError(f"--{name.replace('_', '-')} {value:g}: a share must be a fraction below 1 and a "
                                  "number of rows a whole number")
        if self.val_size < 1 and self.test_size < 1 and self.val_size + self.test_size >= 1:
            raise ConfigError(f"--val-size + --test-size must leave rows for training (got {self.val_size} + "
                              f"{self.test_size})")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"--limit must be > 0 (got {self.limit})")


@dataclass
class PrepareConfig(DataConfig):
    output_dir: str = opt("runs/llm/prepare", "Where plots/lengths.png, stats.json and the split JSONL files go.")
    samples: int = opt(2, "Rendered conversations to print.")

    def validate(self) -> None:
        self.validate_data()


@dataclass
class LlmConfig(DataConfig, ShardingConfig):
    """`dlkit llm train`: the shared train flags, the data flags, and the method's own knobs."""

    method: str = opt("lora", "prompt, prefix, ptuning, lora, dora, rslora, loha, lokr, ia3, partial or full.")
    epochs: int = shared("epochs", 3)
    batch_size: int = opt(16, "Conversations per micro-batch per process (length-grouped).")
    lr: float | None = opt(None, "Peak learning rate. Default: the method's rate for the builtin tiny models "
                           "(prompt/ia3 1e-1, prefix/ptuning 3e-2, LoRA family 2e-2, partial/full 3e-3); real "
                           "models want less (see examples/llm).")
    warmup: float = shared("warmup", 0.05)
    rank: int = opt(8, "Rank of lora/dora/rslora/loha/lokr updates.")
    alpha: float = opt(16.0, "Scaling numerator of the low-rank update (alpha/rank, or alpha/sqrt(rank) for rslora).")
    dropout: float = opt(0.05, "Dropout on the adapter's input (LoRA family).")
    target_modules: str | None = opt(None, "Comma-separated module names to adapt; default per architecture "
                                     "(q_proj,v_proj for Llama/Gemma). See `dlkit llm inspect`.")
    num_virtual_tokens: int = opt(16, "Soft-prompt length for prompt/prefix/ptuning.")
    init_text: str | None = opt(None, "prompt: initialise the soft prompt from the embeddings of this text.")
    unfreeze: str = opt("first2,last2", "partial: decoder layers to train, e.g. first2,last2 or 0,1,-2,-1.")
    packing: bool = opt(False, "Pack conversations into rows of --max-length tokens (per-conversation positions, "
                        "block-diagonal mask: no attention across conversations); --batch-size counts rows.")
    neftune_alpha: float = opt(0.0, "NEFTune: uniform noise on the input embeddings while training, scaled "
                               "alpha/sqrt(L*d) (L: the conversation's tokens without padding, each conversation's "
                               "own in a packed row; d: hidden size); 0 = off, 5 is the paper's usual value.")
    max_new_tokens: int = opt(32, "Tokens generated per answer when sampling and evaluating.")
    strict: bool = opt(False, "Fail on the first malformed row instead of skipping and counting it.")

    def validate(self) -> None:
        from dlkit.llm.methods import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method}: unknown method; known methods: {', '.join(METHODS)}")
        if self.lr is None:
            self.lr = METHODS[self.method].default_lr
        super().validate()
        self.validate_data()
        if self.rank <= 0:
            raise ConfigError(f"--rank must be > 0 (got {self.rank})")
        if self.alpha <= 0:
            raise ConfigError(f"--alpha must be > 0 (got {self.alpha})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.num_virtual_tokens <= 0:
            raise ConfigError(f"--num-virtual-tokens must be > 0 (got {self.num_virtual_tokens})")
        if self.packing and METHODS[self.method].family == "soft-prompt":
            raise ConfigError(f"--packing does not work with --method {self.method}: virtual tokens are prepended "
                              "to each row, not to each conversation")
        if self.neftune_alpha < 0:
            raise ConfigError(f"--neftune-alpha must be >= 0 (got {self.neftune_alpha})")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"--max-new-tokens must be > 0 (got {self.max_new_tokens})")


@dataclass(kw_only=True)
class LlmSweepConfig(SweepConfig):
    """`dlkit llm sweep`: methods (and any --grid) as runs, each also scored on its test split and against the
    untuned model on the same split."""

    methods: str = opt("prompt, prefix, ptuning, lora, dora, rslora, loha, partial", "Comma-separated methods, one "
                       "run each (the first axis of the grid; --grid method=... replaces it).")
    config_dir: str | None = opt(None, "Folder of METHOD.yaml files: each method's own settings (--train-config "
                                       "for methods without one).")
    model: str | None = opt(None, "Base model for every run.")
    data: str | None = opt(None, "Data for every run.")
    max_steps: int | None = opt(None, "Steps per run.")
    epochs: int | None = opt(None, "Epochs per run.")
    max_new_tokens: int = opt(32, "Tokens generated per test answer (and by the untuned model).")
    output_dir: str = opt("runs/llm/sweep", "Parent folder: one run folder per method and grid point, the untuned "
                                            "model's scores and the comparison.")

    def validate(self) -> None:
        super().validate()
        if self.config_dir is not None and not Path(self.config_dir).expanduser().is_dir():
            raise ConfigError(f"--config-dir {self.config_dir}: no such folder")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"--max-new-tokens must be > 0 (got {self.max_new_tokens})")
