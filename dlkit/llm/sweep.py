"""`dlkit llm sweep`: one run per method under a parent folder, the untuned model scored on the same split,
and one comparison (table, comparison.json/.md, comparison.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlkit.core import plots
from dlkit.core.config import load_config
from dlkit.core.errors import ConfigError, RunError
from dlkit.core.progress import info
from dlkit.core.run import atomic_write_json, atomic_write_text
from dlkit.llm.config import LlmConfig
from dlkit.llm.methods import METHODS

COLUMNS = ["method", "train_seconds", "peak_memory_mb", "trainable_params", "trainable_pct", "val_loss",
           "test_exact_match", "test_chrf", "test_rougeL", "gain_exact_match", "gain_chrf"]

HEADERS = {"method": "method", "train_seconds": "time s", "peak_memory_mb": "peak MB", "trainable_params": "trainable",
           "trainable_pct": "%", "val_loss": "val loss", "test_exact_match": "EM", "test_chrf": "chrF",
           "test_rougeL": "ROUGE-L", "gain_exact_match": "gain EM", "gain_chrf": "gain chrF"}


def run_sweep(method_names: list[str], output_dir: Path, config_file: Path | None,
              overrides: dict[str, Any], config_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each method with `config_dir/METHOD.yaml` when that exists (per-method learning rates), else
    `config_file`; flags in `overrides` win over both."""
    from dlkit.llm.evaluate import evaluate

    unknown = [m for m in method_names if m not in METHODS]
    if unknown or not method_names:
        raise ConfigError(f"--methods {','.join(unknown) or '(empty)'}: unknown method; known methods: "
                          f"{', '.join(METHODS)}")
    output_dir = Path(output_dir)
    configs = [load_config(LlmConfig, _config_for(m, config_file, config_dir),
                           {**overrides, "method": m, "output_dir": str(output_dir / m), "name": m})
               for m in method_names]
    untuned = untuned_scores(configs[0])
    atomic_write_json(output_dir / "untuned.json", untuned)
    rows = []
    for cfg in configs:
        info(f"== {cfg.method}")
        metrics = train_in_subprocess(cfg)
        metrics.update(evaluate(Path(cfg.output_dir), max_new_tokens=cfg.max_new_tokens))
        rows.append(row_of(cfg.method, metrics, untuned))
    write_comparison(rows, untuned, output_dir)
    return rows


def train_in_subprocess(cfg: LlmConfig) -> dict[str, Any]:
    """`dlkit llm train` in a fresh process, so each method's peak memory (RSS or CUDA) and time are its own."""
    import subprocess
    import sys

    from dlkit.core.config import saved_dict
    from dlkit.core.run import Run

    config_path = Path(cfg.output_dir).parent / f".{cfg.method}.config.json"
    atomic_write_json(config_path, saved_dict(cfg))
    command = [sys.executable, "-m", "dlkit", "-q", "llm", "train", "--config", str(config_path)]
    command += ["--overwrite"] if cfg.overwrite else []
    try:
        code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode  # metrics are read from the run
    finally:
        config_path.unlink(missing_ok=True)
    if code != 0:
        raise RunError(f"sweep: training {cfg.method} failed (exit code {code}); its run folder is {cfg.output_dir}")
    return Run.open(cfg.output_dir, group="llm").read_metrics()


def _config_for(method: str, config_file: Path | None, config_dir: Path | None) -> Path | None:
    if config_dir is not None:
        if not Path(config_dir).is_dir():
            raise ConfigError(f"--config-dir {config_dir}: no such folder")
        candidate = Path(config_dir) / f"{method}.yaml"
        if candidate.is_file():
            return candidate
    return config_file


def untuned_scores(cfg: LlmConfig) -> dict[str, float]:
    """The base model on the same val/test split: the bar every method has to clear."""
    from dlkit.llm.data import build_splits
    from dlkit.llm.evaluate import score
    from dlkit.llm.models import load_model, load_tokenizer, resolve_model

    base = resolve_model(cfg.model)
    tokenizer = load_tokenizer(base)
    splits = build_splits(cfg, tokenizer)
    metrics, _ = score(load_model(base), tokenizer, splits.val.examples, splits.test, cfg.max_new_tokens,
                       max_length=cfg.max_length)
    return metrics


def row_of(method: str, metrics: dict[str, Any], untuned: dict[str, float]) -> dict[str, Any]:
    row = {"method": method, **{k: metrics.get(k) for k in COLUMNS[1:9]}}
    for key in ("exact_match", "chrf"):
        tuned, base = metrics.get(f"test_{key}"), untuned.get(f"test_{key}")
        row[f"gain_{key}"] = None if tuned is None or base is None else tuned - base
    return row


def write_comparison(rows: list[dict[str, Any]], untuned: dict[str, float], output_dir: Path) -> None:
    atomic_write_json(output_dir / "comparison.json", {"untuned": untuned, "runs": rows})
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    atomic_write_text(output_dir / "comparison.md", "\n".join(lines) + "\n")
    comparison_plot(rows, untuned, output_dir / "comparison.png")
    info(f"wrote {output_dir / 'comparison.md'} and {output_dir / 'comparison.png'}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def comparison_plot(rows: list[dict[str, Any]], untuned: dict[str, float], path: Path) -> None:
    """Four bar panels per method: trainable %, train time, val loss and exact match (untuned as a line)."""
    import matplotlib.pyplot as plt

    panels = [("trainable_pct", "trainable params (%)", None), ("train_seconds", "train time (s)", None),
              ("val_loss", "val loss", untuned.get("val_loss")),
              ("test_exact_match", "test exact match", untuned.get("test_exact_match"))]
    fig, axes = plt.subplots(1, 4, figsize=(max(12, 1.6 * len(rows) * 2), 4))
    labels = [r["method"] for r in rows]
    for ax, (key, title, baseline) in zip(axes, panels, strict=True):
        ax.bar(range(len(rows)), [r.get(key) or 0.0 for r in rows], color="C0")
        if baseline is not None:
            ax.axhline(baseline, color="C3", linestyle="--", label="untuned")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    plots.save_figure(fig, path)


def comparison_table(rows: list[dict[str, Any]]):
    from rich.table import Table

    from dlkit.core.progress import format_value

    table = Table(title="methods compared (gain = tuned - untuned on the test split)")
    for column in COLUMNS:
        table.add_column(HEADERS[column], justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(*["" if row.get(c) is None else format_value(row[c]) for c in COLUMNS])
    return table
