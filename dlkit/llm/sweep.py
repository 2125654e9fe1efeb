"""`dlkit llm sweep`: one run per method and grid point (`--grid lr=1e-4,3e-4 --grid rank=8,16`) under a parent
folder, each scored on its test split, the untuned model scored on the same split, and one comparison (table,
comparison.json/.md, comparison.png). The grid machinery is dlkit.core.grid's, shared with every group's sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlkit.core import grid
from dlkit.core.config import checked, claim_output
from dlkit.core.errors import ConfigError
from dlkit.core.run import atomic_write_json
from dlkit.llm.config import EvalConfig, LlmConfig, LlmSweepConfig
from dlkit.llm.methods import METHODS

METRICS = [
    "train_seconds",
    "peak_memory_mb",
    "trainable_params",
    "trainable_pct",
    "val_loss",
    "test_exact_match",
    "test_chrf",
    "test_rougeL",
    "gain_exact_match",
    "gain_chrf",
]

HEADERS = {
    "run": "run",
    "train_seconds": "time s",
    "peak_memory_mb": "peak MB",
    "trainable_params": "trainable",
    "trainable_pct": "%",
    "val_loss": "val loss",
    "test_exact_match": "EM",
    "test_chrf": "chrF",
    "test_rougeL": "ROUGE-L",
    "gain_exact_match": "gain EM",
    "gain_chrf": "gain chrF",
}
SPLIT_KEYS = (
    "model",
    "data",
    "format",
    "max_length",
    "drop_long",
    "val_size",
    "test_size",
    "split_seed",
    "limit",
    "max_new_tokens",
)  # what decides the untuned model's scores


def sweep(cfg: LlmSweepConfig) -> dict[str, Any]:
    """Each run takes `config_dir/METHOD.yaml` when that exists (per-method learning rates), else --train-config;
    the sweep's flags win over both, and the grid's values over those. Returns {"rows", "columns"}."""
    from dlkit.llm.evaluate import evaluate

    checked(cfg)
    axes = grid.parse_grid(cfg.grid, LlmConfig)
    if "method" not in axes:
        names = [m.strip() for m in cfg.methods.split(",") if m.strip()]
        unknown = [m for m in names if m not in METHODS]
        if unknown or not names:
            raise ConfigError(
                f"--methods {','.join(unknown) or '(empty)'}: unknown method; known methods: {', '.join(METHODS)}"
            )
        axes = {"method": [(m, m) for m in names], **axes}
    points = grid.grid_points(axes)
    held = claim_output(cfg)
    output_dir = held.root
    fixed = {
        k: v
        for k, v in {"model": cfg.model, "data": cfg.data, "max_steps": cfg.max_steps, "epochs": cfg.epochs}.items()
        if v is not None
    }
    fixed.update(max_new_tokens=cfg.max_new_tokens, overwrite=cfg.overwrite)
    train_config = Path(cfg.train_config).expanduser() if cfg.train_config else None
    config_dir = Path(cfg.config_dir).expanduser() if cfg.config_dir else None
    configs = grid.point_configs(
        LlmConfig, points, output_dir, fixed, lambda p: _config_for(p.values["method"], train_config, config_dir)
    )
    untuned: dict[str, dict[str, float]] = {}
    for run_cfg in configs:  # once per split the runs are scored on (the grid may vary the model or the data)
        key = _split_key(run_cfg)
        if key not in untuned:
            untuned[key] = untuned_scores(run_cfg)
    atomic_write_json(
        output_dir / "untuned.json",
        untuned[_split_key(configs[0])]
        if len(untuned) == 1
        else {"by_split": [{"settings": json.loads(k), "scores": v} for k, v in untuned.items()]},
    )

    def score_test(run_cfg: LlmConfig, metrics: dict[str, Any]) -> dict[str, Any]:
        scored = evaluate(EvalConfig(run=str(run_cfg.output_dir), max_new_tokens=run_cfg.max_new_tokens))
        metrics = {**metrics, **scored}
        base = untuned[_split_key(run_cfg)]
        for name in ("exact_match", "chrf"):
            tuned, before = metrics.get(f"test_{name}"), base.get(f"test_{name}")
            metrics[f"gain_{name}"] = None if tuned is None or before is None else tuned - before
        return metrics

    rows = grid.run_grid("llm", configs, points, score_test)
    columns = ["run", *axes, *METRICS]
    baseline = untuned[_split_key(configs[0])] if len(untuned) == 1 else {}
    panels = [
        ("trainable_pct", "trainable params (%)"),
        ("train_seconds", "train time (s)"),
        ("val_loss", "val loss"),
        ("test_exact_match", "test exact match"),
    ]
    grid.write_comparison(
        rows, columns, output_dir, panels, extra={"grid": cfg.grid, "untuned": baseline}, baselines=baseline
    )
    held.release()
    return {"rows": rows, "columns": columns}


def _split_key(cfg: LlmConfig) -> str:
    return json.dumps({k: getattr(cfg, k) for k in SPLIT_KEYS}, sort_keys=True, default=str)


def _config_for(method: str, config_file: Path | None, config_dir: Path | None) -> Path | None:
    if config_dir is not None:
        candidate = config_dir / f"{method}.yaml"
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
    metrics, _ = score(
        load_model(base), tokenizer, splits.val.examples, splits.test, cfg.max_new_tokens, max_length=cfg.max_length
    )
    return metrics


def comparison_table(result: dict[str, Any]) -> Any:
    return grid.comparison_table(
        result["rows"], result["columns"], HEADERS, "runs compared (gain = tuned - untuned on the test split)"
    )
