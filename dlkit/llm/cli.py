"""`dlkit llm`: instruction fine-tuning with soft prompts, the LoRA family, IA3, partial unfreezing and full
fine-tuning, compared side by side. Torch, transformers and PEFT load inside the command bodies."""

from __future__ import annotations

from dlkit.core import progress
from dlkit.core.commands import config_command, group_app
from dlkit.llm.config import (
    ComposeConfig,
    EvalConfig,
    ExportConfig,
    GenerateConfig,
    InspectConfig,
    LlmConfig,
    LlmSweepConfig,
    PlanConfig,
    PrepareConfig,
    ReasonConfig,
)

app = group_app(
    "llm",
    "Instruction fine-tuning of causal LMs: every PEFT method and partial unfreezing, compared side by side.",
    extra="llm",
    requires=("transformers", "peft"),
)


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Load conversations, apply the chat template, print statistics and samples, write the split.

    Example: [bold]dlkit llm prepare --model builtin:tiny-gemma2 --data builtin:instruct-fa[/bold]
    """
    from dlkit.llm.prepare import prepare as run_prepare

    stats = run_prepare(cfg)
    progress.emit(
        stats, progress.metrics_table({k: v for k, v in stats.items() if not isinstance(v, dict)}, title="prepare")
    )


@config_command(app, LlmConfig)
def train(cfg: LlmConfig) -> None:
    """Fine-tune a causal LM on conversations with one method (loss on assistant tokens only).

    Example: [bold]dlkit llm train --method lora --model builtin:tiny-llama --data builtin:instruct[/bold]
    """
    from dlkit.llm.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


@config_command(app, PlanConfig)
def plan(cfg: PlanConfig) -> None:
    """Predicted peak memory per process of `llm train` with these settings, from the model's config.json alone
    (built on the meta device: no weights downloaded): weights, trainable parameters, gradients, optimizer states,
    activations and logits; whether it fits --gpu-memory (or the detected GPU) and the largest batch that does.

    Example: [bold]dlkit llm plan --model google/gemma-2-2b --method lora --quantize 4bit --precision bf16 --batch-size 8 --max-length 1024 --gpu-memory 16[/bold]
    """  # noqa: E501
    from dlkit.llm.plan import plan as run_plan

    result = run_plan(cfg)
    progress.emit(result, progress.plan_table(result))


@config_command(app, EvalConfig)
def eval_(cfg: EvalConfig) -> None:
    """Val loss, perplexity, and exact match, BLEU, chrF and ROUGE-L of greedy answers on the held-out test
    split (never on conversations the run trained on, unless --split train).

    Example: [bold]dlkit llm eval --run runs/llm/lora --max-new-tokens 64[/bold]
    Newest finished LoRA run under runs/llm/: [bold]dlkit llm eval --method lora[/bold]
    """
    from dlkit.llm.evaluate import evaluate as run_evaluate

    metrics = run_evaluate(cfg)
    progress.emit(
        metrics,
        progress.metrics_table(metrics, title=f"eval ({metrics['split']}, {metrics['split_size']} conversations)"),
    )


@config_command(app, GenerateConfig)
def generate(cfg: GenerateConfig) -> None:
    """Answers of the untuned model and of a tuned run, side by side (samples/before_after.md and .jsonl); with
    --run, the base model, and --max-new-tokens, are the run's.

    Example: [bold]dlkit llm generate --run runs/llm/lora --prompts-file examples/llm/probes.jsonl[/bold]
    Newest finished LoRA run: [bold]dlkit llm generate --method lora --prompt "What is the capital of Iran?"[/bold]
    """
    from dlkit.llm.evaluate import generate as run_generate

    rows = run_generate(cfg)
    progress.emit(rows, _before_after_table(rows))


def _before_after_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="before / after", show_lines=True)
    table.add_column("prompt")
    table.add_column("untuned")
    if rows and "tuned" in rows[0]:
        table.add_column("tuned")
    for row in rows:
        table.add_row(*[row[k] for k in ("prompt", "untuned", "tuned") if k in row])
    return table


@config_command(app, InspectConfig)
def inspect(cfg: InspectConfig) -> None:
    """Layer structure, candidate --target-modules, and a dry-run table of trainable parameters per method.

    Example: [bold]dlkit llm inspect --model builtin:tiny-gemma2 --rank 16[/bold]
    """
    from dlkit.llm.tools import inspect as run_inspect

    report = run_inspect(cfg)
    progress.emit(report, _inspect_table(report))


def _inspect_table(report: dict):
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"trainable parameters per method ({report['total_params']:,} total)")
    for col in ("method", "family", "trainable", "%"):
        table.add_column(col, justify="right" if col in ("trainable", "%") else "left")
    for row in report["methods"]:
        table.add_row(row["method"], row["family"], f"{row['trainable_params']:,}", f"{row['trainable_pct']:.3f}")
    head = (
        f"{report['arch']}: {report['num_layers']} layers, hidden {report['hidden_size']}, vocab "
        f"{report['vocab_size']}\nlayer 0: {report['layer']}\ncandidate target modules: "
        f"{', '.join(report['candidate_target_modules'])} (default: {', '.join(report['default_target_modules'])})"
    )
    return Group(head, table)


@config_command(app, LlmSweepConfig)
def sweep(cfg: LlmSweepConfig) -> None:
    """Train and evaluate each method (and each point of a --grid over any train flag) as its own run, then write
    one comparison table and comparison.png over all of them, with the untuned model on the same test split.

    Example: [bold]dlkit llm sweep --methods prompt,lora,partial --max-steps 100 --output-dir runs/llm/sweep[/bold]
    A grid: [bold]dlkit llm sweep --methods lora --grid lr=1e-4,3e-4 --grid rank=8,16 --max-steps 100[/bold]
    Real models: [bold]dlkit llm sweep --config-dir examples/llm/gemma2-2b --output-dir runs/llm/sweep-gemma2[/bold]
    """
    from dlkit.llm.sweep import comparison_table
    from dlkit.llm.sweep import sweep as run_sweep

    result = run_sweep(cfg)
    progress.emit(result["rows"], comparison_table(result))


@config_command(app, ExportConfig)
def export(cfg: ExportConfig) -> None:
    """The run's adapter in PEFT format, or with --merge full weights loadable by plain transformers; with a
    filled model card (README.md) either way.

    Example: [bold]dlkit llm export --run runs/llm/lora --merge --out merged/[/bold]
    To the Hub: [bold]dlkit llm export --run runs/llm/lora --push-to-hub me/my-lora[/bold]
    """
    from dlkit.llm.tools import export as run_export

    result = run_export(cfg)
    progress.emit(result, progress.metrics_table(result, title="export"))


@config_command(app, ComposeConfig)
def compose(cfg: ComposeConfig) -> None:
    """Arithmetic composition of LoRA modules: weighted sums of their updates (addition, negation).

    Example: [bold]dlkit llm compose --base builtin:tiny-llama --adapter runs/llm/a:1 --adapter runs/llm/b:-0.5 --out runs/llm/ab[/bold]
    """  # noqa: E501
    from dlkit.llm.tools import compose as run_compose

    result = run_compose(cfg)
    progress.emit(result, progress.metrics_table(result, title="compose"))


@config_command(app, ReasonConfig)
def reason(cfg: ReasonConfig) -> None:
    """Accuracy of prompting strategies on maths word problems: direct answers, zero-shot and few-shot chain of
    thought, and self-consistency (a majority vote over sampled chains). Writes reason.csv, plots/accuracy.png
    and every prompt and completion (samples/completions.jsonl).

    Example: [bold]dlkit llm reason --data builtin:reasoning --strategy direct --strategy cot --strategy self-consistency --samples 5 --limit 50[/bold]
    """  # noqa: E501
    from dlkit.llm.reason import reason as run_reason

    result = run_reason(cfg)
    progress.emit(result, _reason_table(result))


def _reason_table(result: dict):
    from rich.table import Table

    table = Table(
        title=f"{result['model']} on {result['data']}: {result['questions']} questions "
        f"({result['language']}, {result['shots']} shots)"
    )
    for col in ("strategy", "accuracy", "correct", "samples", "tokens/question", "s/question"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for row in result["strategies"]:
        table.add_row(
            row["strategy"],
            f"{row['accuracy']:.3f}",
            str(row["correct"]),
            str(row["samples"]),
            f"{row['mean_generated_tokens']:.1f}",
            f"{row['seconds_per_question']:.3f}",
        )
    return table
