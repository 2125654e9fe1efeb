"""Sweeps: a grid over any train flag (`--grid lr=1e-4,3e-4 --grid rank=8,16`), one normal run folder per point
of the grid, and one comparison over all of them (comparison.json, .md and .png, and a table).

Each run trains in its own `dlkit GROUP train` process, so its time and peak memory are its own, and its folder is
the folder that command writes (`dlkit compare`, `eval` and `report` read it as any run). A group's `sweep`
command is a `SweepConfig` plus `run_grid`; llm adds its methods, per-method config files and the untuned model.
Imports no torch.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dlkit.core.config import checked, claim_output, config_fields, flag_name, load_config, opt, saved_dict, suggestion
from dlkit.core.errors import ConfigError, RunError

NOT_GRIDDED = ("output_dir", "name", "resume", "overwrite", "command_line", "push_to_hub")  # set per run by the sweep
BOOLEANS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


@dataclass(kw_only=True)
class SweepConfig:
    """What every `sweep` takes; a group re-declares `output_dir` with its own default."""

    grid: list[str] = opt(
        [],
        "KEY=V1,V2,...: one run per value (any train flag, e.g. lr=1e-4,3e-4); repeat for a "
        "grid over several flags (every combination).",
        example="max_steps=1",
    )
    train_config: str | None = opt(
        None,
        "Settings every run shares: a YAML/JSON file of train flags (a run's "
        "config.json works); the --grid values win.",
        path="file",
    )
    output_dir: str = opt(
        "runs/sweep", "Parent folder: one run folder per point of the grid, and the comparison.", path="output"
    )
    overwrite: bool = opt(
        False, "Replace an earlier sweep in --output-dir and its runs (only the files dlkit wrote).", saved=False
    )


@dataclass
class Point:
    """One run of a sweep: its values (typed, for the config) and their text (as typed, for names and tables)."""

    values: dict[str, Any]
    text: dict[str, str]

    @property
    def name(self) -> str:
        """The run's folder name: `lora_lr=1e-4_rank=8` (a method by itself, then KEY=VALUE in grid order)."""
        parts = [self.text["method"]] if "method" in self.text else []
        parts += [f"{key}={text}" for key, text in self.text.items() if key != "method"]
        return "_".join(parts).replace("/", "-") or "run"


def sweep_config(group: str) -> type:
    """`SweepConfig` with the group's default parent folder, runs/GROUP/sweep."""
    return dataclasses.make_dataclass(
        f"{group.capitalize()}SweepConfig",
        [
            (
                "output_dir",
                str,
                opt(
                    f"runs/{group}/sweep",
                    "Parent folder: one run folder per point of the grid, and the comparison.",
                    path="output",
                ),
            )
        ],
        bases=(SweepConfig,),
        kw_only=True,
        namespace={"command": (group, "sweep")},
    )


def parse_grid(specs: list[str], config_cls: type) -> dict[str, list[tuple[Any, str]]]:
    """--grid KEY=V1,V2 (repeatable) -> {field: [(typed value, text)]}, in the order given; keys are train flags
    (dashes or underscores), each value checked against the flag's type and choices."""
    fields = config_fields(config_cls)
    axes: dict[str, list[tuple[Any, str]]] = {}
    for spec in specs:
        key_text, sep, values_text = spec.partition("=")
        key = key_text.strip().removeprefix("--").replace("-", "_")
        if not sep or not key or not values_text.strip():
            raise ConfigError(f"--grid {spec}: expected KEY=V1,V2,... (e.g. --grid lr=1e-4,3e-4)")
        if key not in fields or key in NOT_GRIDDED or not fields[key][0].metadata.get("cli", True):
            known = {k: v for k, v in fields.items() if k not in NOT_GRIDDED and v[0].metadata.get("cli", True)}
            raise ConfigError(f"--grid {spec}: {flag_name(key)} is not a train flag; {suggestion(key, known)}")
        if key in axes:
            raise ConfigError(f"--grid {spec}: {flag_name(key)} is gridded twice; give all its values in one --grid")
        texts = [t.strip() for t in values_text.split(",") if t.strip()]
        axes[key] = [(parse_value(text, fields[key][1], f"--grid {flag_name(key)}"), text) for text in texts]
        if len({repr(v) for v, _ in axes[key]}) < len(texts):
            raise ConfigError(f"--grid {spec}: a value is given twice")
    return axes


def parse_value(text: str, tp: Any, where: str) -> Any:
    """A flag's value from its text, as the command line would read it."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        return parse_value(text, next(a for a in typing.get_args(tp) if a is not type(None)), where)
    if origin is Literal:
        choices = typing.get_args(tp)
        match = [c for c in choices if str(c) == text]
        if not match:
            raise ConfigError(f"{where}: {text!r} is not one of {', '.join(map(str, choices))}")
        return match[0]
    if tp is bool:
        if text.lower() not in BOOLEANS:
            raise ConfigError(f"{where}: {text!r} is not true or false")
        return BOOLEANS[text.lower()]
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not {'an integer' if tp is int else 'a number'}") from None
    if origin is list:
        return [text]
    return text


def grid_points(axes: dict[str, list[tuple[Any, str]]]) -> list[Point]:
    """Every combination of the axes' values, the first axis varying slowest."""
    keys = list(axes)
    return [
        Point(
            {k: v for k, (v, _) in zip(keys, combo, strict=True)}, {k: t for k, (_, t) in zip(keys, combo, strict=True)}
        )
        for combo in itertools.product(*(axes[k] for k in keys))
    ]


def point_configs(
    config_cls: type,
    points: list[Point],
    output_dir: Path,
    fixed: dict[str, Any],
    config_file: Callable[[Point], Path | None],
) -> list[Any]:
    """One validated train config per point: `config_file(point)` (or none), then `fixed`, then the point's values,
    writing into output_dir/NAME. Every config is built before the first run trains, so a bad value stops the
    sweep at once."""
    names = [p.name for p in points]
    if len(set(names)) < len(names):
        raise ConfigError("--grid: two runs would share a folder name; give distinct values")
    return [
        load_config(
            config_cls, config_file(p), {**fixed, **p.values, "output_dir": str(output_dir / p.name), "name": p.name}
        )
        for p in points
    ]


def train_in_subprocess(group: str, cfg: Any) -> dict[str, Any]:
    """`dlkit GROUP train` in a fresh process, so each run's peak memory (RSS or CUDA) and time are its own;
    returns the run's metrics.json."""
    import subprocess
    import sys

    from dlkit.core.run import Run, atomic_write_json

    out = Path(cfg.output_dir)
    config_path = out.parent / f".{out.name}.config.json"
    atomic_write_json(config_path, saved_dict(cfg))
    command = [sys.executable, "-m", "dlkit", "-q", group, "train", "--config", str(config_path)]
    command += ["--overwrite"] if cfg.overwrite else []
    try:
        code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode  # metrics are read from the run
    finally:
        config_path.unlink(missing_ok=True)
    if code != 0:
        raise RunError(f"sweep: training {out.name} failed (exit code {code}); its run folder is {out}")
    return Run.open(out, group=group).read_metrics()


def run_grid(
    group: str,
    configs: list[Any],
    points: list[Point],
    after_run: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train every config (then `after_run(cfg, metrics)`, e.g. an eval); one row per run: its name, its grid
    values (as typed) and its metrics."""
    from dlkit.core.progress import info

    rows = []
    for cfg, point in zip(configs, points, strict=True):
        info(f"== {point.name}")
        metrics = train_in_subprocess(group, cfg)
        if after_run is not None:
            metrics = after_run(cfg, metrics)
        scalars = {k: v for k, v in metrics.items() if v is None or isinstance(v, int | float | str)}
        rows.append({"run": point.name, **point.text, **scalars})
    return rows


def held_out_columns(rows: list[dict[str, Any]], monitor: str | None = None) -> list[str]:
    """The quality columns of a generic comparison: the monitored metric first, then every val_* and test_*
    number the runs have (sizes left out)."""
    from dlkit.core.modelcard import SIZE_WORDS

    found = [
        k
        for r in rows
        for k, v in r.items()
        if k.startswith(("val_", "test_"))
        and not k.endswith(SIZE_WORDS)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    ]
    ordered = ([monitor] if monitor in found else []) + sorted(set(found) - {monitor})
    return list(dict.fromkeys(ordered))


def write_comparison(
    rows: list[dict[str, Any]],
    columns: list[str],
    output_dir: Path,
    panels: list[tuple[str, str]],
    extra: dict[str, Any] | None = None,
    baselines: dict[str, float] | None = None,
) -> None:
    """comparison.json (every row, whole), comparison.md (the columns) and comparison.png (one bar panel per
    (metric, title) of `panels`, one bar per run; a baseline value as a dashed line)."""
    from dlkit.core.progress import info
    from dlkit.core.run import atomic_write_json, atomic_write_text

    atomic_write_json(output_dir / "comparison.json", {**(extra or {}), "runs": rows})
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    atomic_write_text(output_dir / "comparison.md", "\n".join(lines) + "\n")
    comparison_plot(rows, panels, output_dir / "comparison.png", baselines or {})
    info(f"wrote {output_dir / 'comparison.md'} and {output_dir / 'comparison.png'}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def comparison_plot(
    rows: list[dict[str, Any]], panels: list[tuple[str, str]], path: Path, baselines: dict[str, float]
) -> None:
    from dlkit.core import plots

    fig, axes = plots.new_figure(max(3.2 * len(panels), 1.0 * len(rows) * len(panels)), 4.2)
    fig.clf()
    labels = [r["run"] for r in rows]
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.bar(range(len(rows)), [r.get(key) or 0.0 for r in rows], color="C0")
        if baselines.get(key) is not None:
            ax.axhline(baselines[key], color="C3", linestyle="--", label="untuned")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    plots.save_figure(fig, path)


def comparison_table(rows: list[dict[str, Any]], columns: list[str], headers: dict[str, str], title: str) -> Any:
    from rich.table import Table

    from dlkit.core.progress import format_value

    table = Table(title=title)
    for column in columns:
        table.add_column(headers.get(column, column), justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*["" if row.get(c) is None else format_value(row[c]) for c in columns])
    return table


def sweep(
    group: str,
    config_cls: type,
    cfg: SweepConfig,
    after_run: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A group's plain sweep: the grid over its train config, each run trained (then `after_run`, e.g. its eval),
    one comparison of their cost and held-out metrics. Returns {"rows", "columns"}."""
    checked(cfg)
    if not cfg.grid:
        raise ConfigError("--grid is required: e.g. --grid lr=1e-4,3e-4 (repeat it for more flags)")
    points = grid_points(parse_grid(cfg.grid, config_cls))
    held = claim_output(cfg)
    output_dir = held.root
    train_config = Path(cfg.train_config).expanduser() if cfg.train_config else None
    configs = point_configs(config_cls, points, output_dir, {"overwrite": cfg.overwrite}, lambda _: train_config)
    rows = run_grid(group, configs, points, after_run)
    monitor = getattr(configs[0], "monitor", None)
    quality = held_out_columns(rows, monitor)
    columns = ["run", *[k for k in points[0].text], "train_seconds", "peak_memory_mb", "trainable_params", *quality]
    panels = [(k, k) for k in quality[:2]] + [("train_seconds", "train time (s)")]
    write_comparison(rows, columns, output_dir, panels, extra={"grid": cfg.grid})
    held.release()
    return {"rows": rows, "columns": columns}
