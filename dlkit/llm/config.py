"""Settings of the llm commands. No torch here: the CLI builds its flags from these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from dlkit.builtin import listed
from dlkit.core.config import REQUIRED, PlanOptions, RunOutput, ShardingConfig, opt, run_field, shared
from dlkit.core.errors import ConfigError, MissingExtraError
from dlkit.core.grid import SweepConfig
from dlkit.llm.methods import METHODS, named

Format = Literal["auto", "sharegpt", "openai", "alpaca"]
MAX_NEW_TOKENS = 32  # tokens per generated answer, when neither a flag nor the run says


def check_quantized_method(method: str, quantize: str) -> None:
    """A quantized base stays frozen: only PEFT methods train on one."""
    if quantize != "none" and not METHODS[method].peft:
        raise ConfigError(
            f"--quantize {quantize}: --method {method} updates the base weights, which a quantized "
            "base holds as integers; use a PEFT method (lora, dora, ia3, prompt...) or --quantize none"
        )


def check_quantize_extra(quantize: str) -> None:
    """--quantize loads the base with bitsandbytes, an optional dependency: one line naming the extra."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingExtraError(
            f"--quantize {quantize} needs bitsandbytes; install it with: pip install 'dlkit[quantize]'"
        )


def default_lrs() -> str:
    """'prompt/ia3 0.1, prefix/ptuning 0.03, ...': each method's default --lr, methods with the same one joined."""
    by_lr: dict[float, list[str]] = {}
    for method in METHODS.values():
        by_lr.setdefault(method.default_lr, []).append(method.name)
    return ", ".join(f"{'/'.join(names)} {lr:g}" for lr, names in by_lr.items())


@dataclass
class DataConfig:
    """What `prepare`, `train` and `eval` share about turning rows into training examples."""

    data: str = opt(
        "builtin:instruct",
        "Conversations: builtin:instruct[-fa], a JSON/JSONL/CSV/parquet file or a "
        "Hub dataset id (ShareGPT, OpenAI messages or alpaca rows).",
        path="data",
    )
    model: str = opt(
        "builtin:tiny-llama",
        f"Base model: {listed('llm', 'model')}, a local "
        "save_pretrained folder or a Hub id (google/gemma-2-2b, meta-llama/Llama-3.2-3B).",
        path="model",
    )
    format: Format = opt("auto", "Row format; auto-detected from the columns unless forced.")
    max_length: int = opt(
        512,
        "Tokens per conversation; a longer one is truncated (its prompt keeps its end; "
        "counted) or dropped. Prompts at generation are cut to it too.",
        min=8,
    )
    drop_long: bool = opt(False, "Drop conversations longer than --max-length instead of truncating them.")
    val_size: float = opt(0.1, "Validation share of the rows (a fraction < 1 or a row count).", min=0)
    test_size: float = opt(0.1, "Test share of the rows, used by `llm eval` for generation metrics.", min=0)
    split_seed: int = opt(0, "Seed of the train/val/test split.")
    limit: int | None = opt(None, "Use only the first N rows (quick trials on big datasets).", min=1)

    def validate_data(self) -> None:
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if value >= 1 and value != int(value):
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value:g}: a share must be a fraction below 1 and a "
                    "number of rows a whole number"
                )
        if self.val_size < 1 and self.test_size < 1 and self.val_size + self.test_size >= 1:
            raise ConfigError(
                f"--val-size + --test-size must leave rows for training (got {self.val_size} + {self.test_size})"
            )


@dataclass
class PrepareConfig(DataConfig):
    """`dlkit llm prepare`."""

    output_dir: str = opt(
        "runs/llm/prepare", "Where plots/lengths.png, stats.json and the split JSONL files go.", path="output"
    )
    samples: int = opt(2, "Rendered conversations to print.", min=0)
    overwrite: bool = opt(
        False, "Replace what an earlier `llm prepare` wrote in --output-dir (only its files).", saved=False
    )

    command: ClassVar[tuple[str, str]] = ("llm", "prepare")

    def validate(self) -> None:
        self.validate_data()


LR_HELP = (
    f"Peak learning rate. Default: the method's rate for the builtin tiny models ({default_lrs()}); real "
    "models want less (see examples/llm)."
)


@dataclass
class LlmConfig(DataConfig, ShardingConfig):
    """`dlkit llm train`: the shared train flags, the data flags, and the method's own knobs."""

    method: str = opt("lora", f"{', '.join(METHODS)}: see `dlkit llm inspect` for what each trains.")
    epochs: int = shared("epochs", 3)
    batch_size: int = opt(16, "Conversations per micro-batch per process (length-grouped).", min=1)
    lr: float | None = opt(None, LR_HELP, above=0)  # type: ignore[assignment]  # validate() sets the method's
    warmup: float = shared("warmup", 0.05)
    rank: int = opt(8, f"Rank of {'/'.join(named('lora'))} updates.", min=1)
    alpha: float = opt(
        16.0, "Scaling numerator of the low-rank update (alpha/rank, or alpha/sqrt(rank) for rslora).", above=0
    )
    dropout: float = opt(0.05, "Dropout on the adapter's input (LoRA family).", min=0, below=1)
    target_modules: str | None = opt(
        None,
        "Comma-separated module names to adapt; default per architecture "
        "(q_proj,v_proj for Llama/Gemma). See `dlkit llm inspect`.",
    )
    num_virtual_tokens: int = opt(16, f"Soft-prompt length for {'/'.join(named('soft-prompt'))}.", min=1)
    init_text: str | None = opt(None, "prompt: initialise the soft prompt from the embeddings of this text.")
    unfreeze: str = opt("first2,last2", "partial: decoder layers to train, e.g. first2,last2 or 0,1,-2,-1.")
    quantize: Literal["none", "4bit", "8bit"] = opt(
        "none",
        "Hold the frozen base in 4-bit NF4 (double quantisation, "
        "computing in --precision's dtype: QLoRA) or 8-bit with "
        "bitsandbytes; PEFT methods only. Needs dlkit[quantize].",
    )
    packing: bool = opt(
        False,
        "Pack conversations into rows of --max-length tokens (per-conversation positions, "
        "block-diagonal mask: no attention across conversations); --batch-size counts rows.",
    )
    neftune_alpha: float = opt(
        0.0,
        "NEFTune: uniform noise on the input embeddings while training, scaled "
        "alpha/sqrt(L*d) (L: the conversation's tokens without padding, each conversation's "
        "own in a packed row; d: hidden size); 0 = off, 5 is the paper's usual value.",
        min=0,
    )
    max_new_tokens: int = opt(MAX_NEW_TOKENS, "Tokens generated per answer when sampling and evaluating.", min=1)
    strict: bool = opt(False, "Fail on the first malformed row instead of skipping and counting it.")

    command: ClassVar[tuple[str, str]] = ("llm", "train")

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method}: unknown method; known methods: {', '.join(METHODS)}")
        if self.lr is None:
            self.lr = METHODS[self.method].default_lr
        super().validate()
        self.validate_data()
        if self.packing and METHODS[self.method].family == "soft-prompt":
            raise ConfigError(
                f"--packing does not work with --method {self.method}: virtual tokens are prepended "
                "to each row, not to each conversation"
            )
        if self.quantize != "none":
            check_quantized_method(self.method, self.quantize)
            if self.sharding == "fsdp":
                raise ConfigError(
                    f"--quantize {self.quantize} with --sharding fsdp: a quantized base is not sharded; "
                    "a 4-bit base with a PEFT method fits one GPU per process (use DDP: --sharding "
                    "none)"
                )
            check_quantize_extra(self.quantize)


METHOD_HELP = "Instead of --run: the newest finished run of this method under runs/llm/ (e.g. lora)."
MAX_NEW_TOKENS_HELP = "Tokens generated per answer. Default: the run's --max-new-tokens (32 without a run)."


class RunOrMethod:
    """--run DIR, or --method M meaning the newest finished run of M under runs/llm/ (named, so the user knows)."""

    run: str | None
    method: str | None

    def find_run(self, required: bool) -> None:
        if self.run is not None and self.method is not None:
            raise ConfigError("pass --run DIR or --method M, not both")
        if self.method is None:
            if required and self.run is None:
                raise ConfigError("pass --run DIR (a `dlkit llm train` run) or --method M (its newest finished run)")
            return
        from dlkit.core.overview import newest_finished_run
        from dlkit.core.progress import info

        found = newest_finished_run(Path("runs/llm"), "llm", "method", self.method)
        info(f"--method {self.method}: using {found}, the newest finished {self.method} run under runs/llm")
        self.run, self.method = str(found), None


@dataclass
class EvalConfig(RunOrMethod):
    """`dlkit llm eval`."""

    run: str | None = run_field("llm", required=False)
    method: str | None = opt(None, METHOD_HELP)
    data: str | None = opt(None, "Evaluate on this data instead of the run's test split.", path="data")
    max_new_tokens: int | None = opt(None, MAX_NEW_TOKENS_HELP, min=1, from_run="max_new_tokens")
    batch_size: int = opt(16, "Prompts per generation batch.", min=1)
    limit: int | None = opt(None, "Evaluate only the first N test conversations.", min=1, example="2")
    bertscore: str | None = opt(
        None,
        "Also BERTScore F1 with this encoder (folder or Hub id, e.g. a multilingual BERT for Persian).",
        path="model",
    )
    split: str | None = opt(
        None,
        "Score one split of the run's data (loss and answers): test, validation, or train "
        "(only when asked). Default: val loss on validation, answers on test.",
    )

    command: ClassVar[tuple[str, str]] = ("llm", "eval")

    def validate(self) -> None:
        self.find_run(required=True)


@dataclass
class GenerateConfig(RunOrMethod):
    """`dlkit llm generate`."""

    model: str | None = opt(
        None,
        f"Base model: {listed('llm', 'model')}, a local folder or a Hub id. "
        "Default: the run's base with --run, else builtin:tiny-llama.",
        path="model",
        from_run="model",
        run_bound=True,
    )
    run: str | None = run_field("llm", "A trained llm run, shown beside the base model.", required=False)
    method: str | None = opt(None, METHOD_HELP)
    prompt: list[str] = opt([], "A question (repeatable).", example="What is the capital of Iran?")
    prompts_file: str | None = opt(None, 'JSONL of {"prompt": ...} or a text file, one question per line.', path="file")
    system: str | None = opt(None, "System text (merged into the first turn for Gemma).")
    max_new_tokens: int | None = opt(None, MAX_NEW_TOKENS_HELP, min=1, from_run="max_new_tokens")

    command: ClassVar[tuple[str, str]] = ("llm", "generate")

    def validate(self) -> None:
        self.find_run(required=False)
        if self.run is None:
            self.model = self.model or "builtin:tiny-llama"


@dataclass
class InspectConfig:
    """`dlkit llm inspect`."""

    model: str = opt(
        "builtin:tiny-llama", f"Base model: {listed('llm', 'model')}, a local folder or a Hub id.", path="model"
    )
    target_modules: str | None = opt(None, "Modules to adapt (default per architecture).")
    rank: int = opt(8, "Rank for the LoRA family.", min=1)
    num_virtual_tokens: int = opt(16, "Soft-prompt length.", min=1)
    unfreeze: str = opt("first2,last2", "partial: layers to train.")

    command: ClassVar[tuple[str, str]] = ("llm", "inspect")


@dataclass(kw_only=True)
class LlmSweepConfig(SweepConfig):
    """`dlkit llm sweep`: methods (and any --grid) as runs, each also scored on its test split and against the
    untuned model on the same split."""

    methods: str = opt(
        ", ".join(m.name for m in METHODS.values() if m.in_sweep),
        "Comma-separated methods, one run each (the first axis of the grid; --grid method=... replaces it).",
        example="lora",
    )
    config_dir: str | None = opt(
        None,
        "Folder of METHOD.yaml files: each method's own settings (--train-config for methods without one).",
        path="folder",
    )
    model: str | None = opt(None, "Base model for every run.", path="model")
    data: str | None = opt(None, "Data for every run.", path="data")
    max_steps: int | None = opt(None, "Steps per run.", min=1, example="1")
    epochs: int | None = opt(None, "Epochs per run.", min=1)
    max_new_tokens: int = opt(MAX_NEW_TOKENS, "Tokens generated per test answer (and by the untuned model).", min=1)
    output_dir: str = opt(
        "runs/llm/sweep",
        "Parent folder: one run folder per method and grid point, the untuned model's scores and the comparison.",
        path="output",
    )

    command: ClassVar[tuple[str, str]] = ("llm", "sweep")


@dataclass
class ExportConfig:
    """`dlkit llm export`."""

    run: str = run_field("llm")
    out: str | None = opt(None, "Output folder (default: RUN/export or RUN/merged).", path="output")
    merge: bool = opt(False, "Merge the adapter into the base weights (plain transformers).")
    push_to_hub: str | None = opt(
        None, "Upload the exported folder, with its model card, to this Hub repository (NAMESPACE/NAME)."
    )
    overwrite: bool = opt(False, "Replace an earlier export in --out (only dlkit's files).", saved=False)

    command: ClassVar[tuple[str, str]] = ("llm", "export")


@dataclass
class ComposeConfig:
    """`dlkit llm compose`."""

    base: str = opt(
        REQUIRED, "The base model every adapter was trained on.", path="model", example="builtin:tiny-llama"
    )
    adapter: list[str] = opt(
        REQUIRED, "RUN:WEIGHT, repeatable; a negative weight subtracts.", path="run", run_of="llm", example="{run}:1.0"
    )
    out: str = opt(
        REQUIRED,
        "Output run folder (evaluable with `dlkit llm eval --run`).",
        path="output",
        example="runs/llm/composed",
    )
    eval_data: list[str] = opt([], "Data to score the result on (repeatable).", path="data")
    overwrite: bool = opt(False, "Replace an earlier composition in --out (only dlkit's files).", saved=False)
    max_new_tokens: int = opt(MAX_NEW_TOKENS, "Tokens generated per answer.", min=1)

    command: ClassVar[tuple[str, str]] = ("llm", "compose")


STRATEGIES = ("direct", "cot", "fewshot-cot", "self-consistency")


@dataclass(kw_only=True)
class ReasonConfig(RunOutput):
    """`dlkit llm reason`."""

    strategies: list[str] = opt(
        ["direct", "cot"],
        "direct, cot, fewshot-cot or self-consistency; repeat it to compare several.",
        flags=("--strategy",),
        choices=STRATEGIES,
    )
    model: str | None = opt(
        None,
        "Model to prompt (builtin, local folder or Hub id). Default: the run's base with "
        "--run, else builtin:tiny-llama.",
        path="model",
        from_run="model",
        run_bound=True,
    )
    run: str | None = run_field("llm", "Prompt a trained llm run (base + adapter) instead of --model.", required=False)
    data: str = opt(
        "builtin:reasoning",
        "Problems with gold answers: builtin:reasoning[-fa], a JSONL/JSON/CSV of "
        "question/answer rows (a number, or GSM8K's '... #### N') or a Hub id.",
        path="data",
    )
    limit: int | None = opt(None, "Score only the first N problems.", min=1, example="2")
    shots: int = opt(4, "Worked examples in fewshot-cot (and self-consistency) prompts.", min=0)
    shots_file: str | None = opt(
        None,
        "Take the shots from this file (same layout as --data); default: the first "
        "--shots problems of --data, which are then not scored.",
        path="file",
    )
    samples: int = opt(5, "self-consistency: completions sampled per question.", min=1)
    temperature: float = opt(0.7, "self-consistency: sampling temperature.", min=0)
    trigger: str | None = opt(
        None,
        'Zero-shot CoT trigger; default "Let\'s think step by step." or its Persian '
        "equivalent, by the data's language.",
    )
    max_new_tokens: int = opt(128, "Tokens generated per completion.", min=1, example="8")
    batch_size: int = opt(16, "Prompts per generation batch.", min=1)
    seed: int = opt(0, "Seed of the sampled completions.")

    command: ClassVar[tuple[str, str]] = ("llm", "reason")

    def validate(self) -> None:
        self.strategies = list(dict.fromkeys(self.strategies))
        if not self.strategies:
            raise ConfigError(f"--strategy: give at least one of {', '.join(STRATEGIES)}")
        if "self-consistency" in self.strategies and self.temperature <= 0:
            raise ConfigError(
                f"--temperature must be > 0 for self-consistency (got {self.temperature}); "
                "greedy samples would all be the same"
            )
        if "fewshot-cot" in self.strategies and self.shots == 0:
            raise ConfigError("--strategy fewshot-cot needs --shots >= 1")
        if self.run is None:
            self.model = self.model or "builtin:tiny-llama"


@dataclass(kw_only=True)
class PlanConfig(PlanOptions):
    """`dlkit llm plan`: the peak memory a `train` with these settings needs per process, from config.json alone."""

    model: str = shared("model", "builtin:tiny-llama", DataConfig)
    method: str = shared("method", "lora", LlmConfig)
    rank: int = shared("rank", 8, LlmConfig)
    alpha: float = shared("alpha", 16.0, LlmConfig)
    dropout: float = shared("dropout", 0.05, LlmConfig)
    target_modules: str | None = shared("target_modules", None, LlmConfig)
    num_virtual_tokens: int = shared("num_virtual_tokens", 16, LlmConfig)
    unfreeze: str = shared("unfreeze", "first2,last2", LlmConfig)
    quantize: Literal["none", "4bit", "8bit"] = shared("quantize", "none", LlmConfig)
    batch_size: int = opt(8, "Rows per micro-batch per process (conversations, or packed rows).", min=1)
    max_length: int = opt(
        512,
        "Tokens per row; the plan counts every row this long and every token scored, an "
        "upper bound for shorter or partly labelled conversations.",
        min=1,
    )

    command: ClassVar[tuple[str, str]] = ("llm", "plan")

    def validate(self) -> None:
        from dlkit.llm.methods import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method}: unknown method; known methods: {', '.join(METHODS)}")
        check_quantized_method(self.method, self.quantize)
