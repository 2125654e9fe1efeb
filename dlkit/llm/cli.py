"""`dlkit llm`: instruction fine-tuning with soft prompts, the LoRA family, IA3, partial unfreezing and full
fine-tuning, compared side by side. Torch, transformers and PEFT load inside the command bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.core import progress
from dlkit.core.commands import config_command, group_app, run_option
from dlkit.llm.config import LlmConfig, LlmSweepConfig, PrepareConfig

app = group_app("llm", "Instruction fine-tuning of causal LMs: every PEFT method and partial unfreezing, "
                "compared side by side.", extra="llm", requires=("transformers", "peft"))

ModelOpt = Annotated[str, typer.Option("--model", help="Base model: builtin:tiny-llama, builtin:tiny-gemma2, a "
                                       "local folder or a Hub id.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens generated per answer.")]
MethodOpt = Annotated[Optional[str], typer.Option(help="Instead of --run: the newest finished run of this method "  # noqa: UP045
                                                  "under runs/llm/ (e.g. lora).")]


@config_command(app, PrepareConfig)
def prepare(cfg: PrepareConfig) -> None:
    """Load conversations, apply the chat template, print statistics and samples, write the split.

    Example: [bold]dlkit llm prepare --model builtin:tiny-gemma2 --data builtin:instruct-fa[/bold]
    """
    from dlkit.llm.prepare import prepare as run_prepare

    stats = run_prepare(cfg)
    progress.emit(stats, progress.metrics_table({k: v for k, v in stats.items() if not isinstance(v, dict)},
                                                title="prepare"))


@config_command(app, LlmConfig)
def train(cfg: LlmConfig) -> None:
    """Fine-tune a causal LM on conversations with one method (loss on assistant tokens only).

    Example: [bold]dlkit llm train --method lora --model builtin:tiny-llama --data builtin:instruct[/bold]
    """
    from dlkit.llm.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


def _run_or_method(run: Path | None, method: str | None, required: bool = True) -> Path | None:
    """--run as given, or the newest finished run of --method under runs/llm/ (named, so the user knows)."""
    from dlkit.core.errors import ConfigError

    if run is not None and method is not None:
        raise ConfigError("pass --run DIR or --method M, not both")
    if method is None:
        if required and run is None:
            raise ConfigError("pass --run DIR (a `dlkit llm train` run) or --method M (its newest finished run)")
        return run
    from dlkit.core.overview import newest_finished_run

    found = newest_finished_run(Path("runs/llm"), "llm", "method", method)
    progress.info(f"--method {method}: using {found}, the newest finished {method} run under runs/llm")
    return found


@app.command("eval")
def eval_(
    run: Annotated[Optional[Path], typer.Option(help="A run folder written by `dlkit llm train`.")] = None,  # noqa: UP045
    method: MethodOpt = None,
    data: Annotated[Optional[str], typer.Option(help="Evaluate on this data instead of the run's test split.")] = None,  # noqa: UP045
    max_new_tokens: MaxNewTokens = 32,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generation batch.")] = 16,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N test conversations.")] = None,  # noqa: UP045
    bertscore: Annotated[Optional[str], typer.Option(help="Also BERTScore F1 with this encoder (folder or Hub id, "  # noqa: UP045
                                                     "e.g. a multilingual BERT for Persian).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Score one split of the run's data (loss and answers): "  # noqa: UP045
                                                 "test, validation, or train (only when asked). Default: val "
                                                 "loss on validation, answers on test.")] = None,
) -> None:
    """Val loss, perplexity, and exact match, BLEU, chrF and ROUGE-L of greedy answers on the held-out test
    split (never on conversations the run trained on, unless --split train).

    Example: [bold]dlkit llm eval --run runs/llm/lora --max-new-tokens 64[/bold]
    Newest finished LoRA run under runs/llm/: [bold]dlkit llm eval --method lora[/bold]
    """
    from dlkit.llm.evaluate import evaluate as run_evaluate

    metrics = run_evaluate(_run_or_method(run, method), data=data, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, limit=limit, bertscore_model=bertscore, split=split)
    progress.emit(metrics, progress.metrics_table(metrics, title=f"eval ({metrics['split']}, "
                                                               f"{metrics['split_size']} conversations)"))


@app.command()
def generate(
    model: ModelOpt = "builtin:tiny-llama",
    run: Annotated[Optional[Path], typer.Option(help="A trained llm run, shown beside the base model.")] = None,  # noqa: UP045
    method: MethodOpt = None,
    prompt: Annotated[Optional[list[str]], typer.Option(help="A question (repeatable).")] = None,  # noqa: UP045
    prompts_file: Annotated[Optional[Path], typer.Option(help="JSONL of {\"prompt\": ...} or a text file, one "  # noqa: UP045
                                                         "question per line.")] = None,
    system: Annotated[Optional[str], typer.Option(help="System text (merged into the first turn for Gemma).")] = None,  # noqa: UP045
    max_new_tokens: MaxNewTokens = 32,
) -> None:
    """Answers of the untuned model and of a tuned run, side by side (samples/before_after.md and .jsonl).

    Example: [bold]dlkit llm generate --run runs/llm/lora --prompts-file examples/llm/probes.jsonl[/bold]
    Newest finished LoRA run: [bold]dlkit llm generate --method lora --prompt "What is the capital of Iran?"[/bold]
    """
    from dlkit.llm.evaluate import before_after

    rows = before_after(model, _run_or_method(run, method, required=False), prompt or [], prompts_file, system,
                        max_new_tokens)
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


@app.command()
def inspect(
    model: ModelOpt = "builtin:tiny-llama",
    target_modules: Annotated[Optional[str], typer.Option(help="Modules to adapt (default per architecture).")] = None,  # noqa: UP045
    rank: Annotated[int, typer.Option(help="Rank for the LoRA family.")] = 8,
    num_virtual_tokens: Annotated[int, typer.Option(help="Soft-prompt length.")] = 16,
    unfreeze: Annotated[str, typer.Option(help="partial: layers to train.")] = "first2,last2",
) -> None:
    """Layer structure, candidate --target-modules, and a dry-run table of trainable parameters per method.

    Example: [bold]dlkit llm inspect --model builtin:tiny-gemma2 --rank 16[/bold]
    """
    from dlkit.llm.tools import inspect_model

    report = inspect_model(model, target_modules, rank, num_virtual_tokens, unfreeze)
    progress.emit(report, _inspect_table(report))


def _inspect_table(report: dict):
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"trainable parameters per method ({report['total_params']:,} total)")
    for col in ("method", "family", "trainable", "%"):
        table.add_column(col, justify="right" if col in ("trainable", "%") else "left")
    for row in report["methods"]:
        table.add_row(row["method"], row["family"], f"{row['trainable_params']:,}", f"{row['trainable_pct']:.3f}")
    head = (f"{report['arch']}: {report['num_layers']} layers, hidden {report['hidden_size']}, vocab "
            f"{report['vocab_size']}\nlayer 0: {report['layer']}\ncandidate target modules: "
            f"{', '.join(report['candidate_target_modules'])} (default: {', '.join(report['default_target_modules'])})")
    return Group(head, table)


@config_command(app, LlmSweepConfig)
def sweep(cfg: LlmSweepConfig) -> None:
    """Train and evaluate each method (and each point of a --grid over any train flag) as its own run, then write
    one comparison table and comparison.png over all of them, with the untuned model on the same test split.

    Example: [bold]dlkit llm sweep --methods prompt,lora,partial --max-steps 100 --output-dir runs/llm/sweep[/bold]
    A grid: [bold]dlkit llm sweep --methods lora --grid lr=1e-4,3e-4 --grid rank=8,16 --max-steps 100[/bold]
    Real models: [bold]dlkit llm sweep --config-dir examples/llm/gemma2-2b --output-dir runs/llm/sweep-gemma2[/bold]
    """
    from dlkit.llm.sweep import comparison_table, run_sweep

    result = run_sweep(cfg)
    progress.emit(result["rows"], comparison_table(result))


@app.command()
def export(
    run: Annotated[Path, run_option()],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: RUN/export or RUN/merged).")] = None,  # noqa: UP045
    merge: Annotated[bool, typer.Option(help="Merge the adapter into the base weights (plain transformers).")] = False,
    push_to_hub: Annotated[Optional[str], typer.Option(help="Upload the exported folder, with its model card, to "  # noqa: UP045
                                                       "this Hub repository (NAMESPACE/NAME).")] = None,
) -> None:
    """The run's adapter in PEFT format, or with --merge full weights loadable by plain transformers; with a
    filled model card (README.md) either way.

    Example: [bold]dlkit llm export --run runs/llm/lora --merge --out merged/[/bold]
    To the Hub: [bold]dlkit llm export --run runs/llm/lora --push-to-hub me/my-lora[/bold]
    """
    from dlkit.llm.tools import export_run

    result = export_run(run, out, merge, push_to_hub)
    progress.emit(result, progress.metrics_table(result, title="export"))


@app.command()
def compose(
    base: Annotated[str, typer.Option(help="The base model every adapter was trained on.")],
    adapter: Annotated[list[str], typer.Option(help="RUN:WEIGHT, repeatable; a negative weight subtracts.")],
    out: Annotated[Path, typer.Option(help="Output run folder (evaluable with `dlkit llm eval --run`).")],
    eval_data: Annotated[Optional[list[str]], typer.Option(help="Data to score the result on (repeatable).")] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    max_new_tokens: MaxNewTokens = 32,
) -> None:
    """Arithmetic composition of LoRA modules: weighted sums of their updates (addition, negation).

    Example: [bold]dlkit llm compose --base builtin:tiny-llama --adapter runs/llm/a:1 --adapter runs/llm/b:-0.5 --out runs/llm/ab[/bold]
    """  # noqa: E501
    from dlkit.llm.tools import compose_adapters

    result = compose_adapters(base, adapter, out, eval_data or [], overwrite, max_new_tokens)
    progress.emit(result, progress.metrics_table(result, title="compose"))


@app.command()
def reason(
    strategy: Annotated[Optional[list[str]], typer.Option(help="direct, cot, fewshot-cot or self-consistency; "  # noqa: UP045
                                                          "repeat it to compare several (default: direct, cot).")] = None,  # noqa: E501
    model: ModelOpt = "builtin:tiny-llama",
    run: Annotated[Optional[Path], typer.Option(help="Prompt a trained llm run (base + adapter) instead of --model.")] = None,  # noqa: UP045, E501
    data: Annotated[str, typer.Option(help="Problems with gold answers: builtin:reasoning[-fa], a JSONL/JSON/CSV of "
                                      "question/answer rows (a number, or GSM8K's '... #### N') or a Hub id.")] = "builtin:reasoning",  # noqa: E501
    limit: Annotated[Optional[int], typer.Option(help="Score only the first N problems.")] = None,  # noqa: UP045
    shots: Annotated[int, typer.Option(help="Worked examples in fewshot-cot (and self-consistency) prompts.")] = 4,
    shots_file: Annotated[Optional[Path], typer.Option(help="Take the shots from this file (same layout as "  # noqa: UP045
                                                       "--data); default: the first --shots problems of --data, "
                                                       "which are then not scored.")] = None,
    samples: Annotated[int, typer.Option(help="self-consistency: completions sampled per question.")] = 5,
    temperature: Annotated[float, typer.Option(help="self-consistency: sampling temperature.")] = 0.7,
    trigger: Annotated[Optional[str], typer.Option(help="Zero-shot CoT trigger; default \"Let's think step by step.\" "  # noqa: UP045
                                                   "or its Persian equivalent, by the data's language.")] = None,
    max_new_tokens: MaxNewTokens = 128,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generation batch.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the sampled completions.")] = 0,
    output_dir: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/llm/reason-TIME).")] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output-dir.")] = False,
) -> None:
    """Accuracy of prompting strategies on maths word problems: direct answers, zero-shot and few-shot chain of
    thought, and self-consistency (a majority vote over sampled chains). Writes reason.csv, plots/accuracy.png
    and every prompt and completion (samples/completions.jsonl).

    Example: [bold]dlkit llm reason --data builtin:reasoning --strategy direct --strategy cot --strategy self-consistency --samples 5 --limit 50[/bold]
    """  # noqa: E501
    from dlkit.llm.reason import ReasonConfig
    from dlkit.llm.reason import reason as run_reason

    cfg = ReasonConfig(strategies=strategy or ["direct", "cot"], model=model, run=str(run) if run else None,
                       data=data, limit=limit, shots=shots, shots_file=str(shots_file) if shots_file else None,
                       samples=samples, temperature=temperature, trigger=trigger, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, seed=seed, output_dir=str(output_dir) if output_dir else None,
                       overwrite=overwrite)
    result = run_reason(cfg)
    progress.emit(result, _reason_table(result))


def _reason_table(result: dict):
    from rich.table import Table

    table = Table(title=f"{result['model']} on {result['data']}: {result['questions']} questions "
                        f"({result['language']}, {result['shots']} shots)")
    for col in ("strategy", "accuracy", "correct", "samples", "tokens/question", "s/question"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for row in result["strategies"]:
        table.add_row(row["strategy"], f"{row['accuracy']:.3f}", str(row["correct"]), str(row["samples"]),
                      f"{row['mean_generated_tokens']:.1f}", f"{row['seconds_per_question']:.3f}")
    return table
