"""`dlkit info`, `dlkit compare` and `dlkit runs list`: read-only views over the machine and run folders."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from dlkit.core.config import META_KEY, checked
from dlkit.core.errors import DlkitError, RunError
from dlkit.core.progress import MODE, console, emit, format_value, warn
from dlkit.core.root import CompareConfig, InfoConfig, RunsListConfig
from dlkit.core.run import Run

FIXED_COLUMNS = [
    "run",
    "group",
    "method",
    "status",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "train_seconds",
    "peak_memory_mb",
    "samples_per_second",
    "tokens_per_second",
]
BOOKKEEPING = {"steps", "epochs", "processes", "skipped_steps", "skipped_items", "status", "group"}
METHOD_KEYS = ("method", "arch", "mode", "head")


# -- dlkit info --------------------------------------------------------------------------------------


def installed_extras() -> dict[str, list[str]]:
    """extra -> missing distributions, read from dlkit's own metadata (so it never drifts from pyproject)."""
    needs: dict[str, set[str]] = {}
    for req in metadata.requires("dlkit") or []:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?.*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if match:
            needs.setdefault(match.group(3), set()).add(match.group(1))
    missing: dict[str, list[str]] = {}
    for extra, dists in needs.items():
        missing[extra] = sorted(d for d in dists if d != "dlkit" and not _installed(d))
    return missing


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


INFO_VERSIONS = [
    "dlkit",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "torchvision",
    "open_clip_torch",
    "typer",
]


def hub_status(timeout: float = 1.0) -> str:
    """The Hub's state for `dlkit info`: offline under HF_HUB_OFFLINE without probing, else whether the
    endpoint (HF_ENDPOINT, default huggingface.co) accepts a connection within `timeout`
    seconds. The probe runs in a daemon thread, so a slow DNS lookup cannot make `dlkit info` wait."""
    import threading
    from urllib.parse import urlsplit

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no"):
        return "offline (HF_HUB_OFFLINE)"
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    answer: list[bool] = []

    def probe() -> None:
        import socket

        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return "reachable" if answer and answer[0] else "not reachable (offline)"


def info(cfg: InfoConfig) -> dict[str, Any]:
    """Versions, devices, installed extras, known problems and the Hub's state: printed, and returned."""
    import torch

    checked(cfg)
    from dlkit.core.compat import known_bad, outside_range

    report: dict[str, Any] = {"versions": {}}
    for dist in INFO_VERSIONS:
        report["versions"][dist] = metadata.version(dist) if _installed(dist) else None
    report["devices"] = {
        "cpu_cores": os.cpu_count(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    report["extras"] = {
        extra: ("installed" if not missing else f"missing {', '.join(missing)}")
        for extra, missing in sorted(installed_extras().items())
    }
    report["problems"] = known_bad() + outside_range()
    hub = hub_status()
    report["hub"] = hub
    report["hub_reachable"] = hub == "reachable"
    for problem in report["problems"]:
        warn(problem)
    from rich.table import Table

    table = Table(title="dlkit info", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for dist, version in report["versions"].items():
        table.add_row(dist, version or "[dim]not installed[/dim]")
    devices = report["devices"]
    table.add_row("CPU cores", str(devices["cpu_cores"]))
    table.add_row("CUDA", ", ".join(devices["cuda"]) or "none")
    table.add_row("MPS", "yes" if devices["mps"] else "no")
    for extra, state in report["extras"].items():
        table.add_row(f"extra: {extra}", state)
    table.add_row("Hugging Face Hub", hub)
    table.add_row(
        "known problems",
        f"[red]{len(report['problems'])}[/red] (see the warnings above)" if report["problems"] else "none",
    )
    emit(report, table)
    return report


# -- finding runs -----------------------------------------------------------------------------------


def find_runs(paths: list[Path], max_depth: int = 3, exports: bool = False) -> list[Path]:
    """Run folders among `paths`: each path is a run, or a folder holding runs (a sweep) up to max_depth;
    with `exports`, exported model folders too."""
    found: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.exists():
            raise RunError(f"{path}: no such folder")
        found.extend(_walk(path, max_depth, exports))
    return list(dict.fromkeys(found))  # in the order given (a sweep folder: its runs by name)


def newest_finished_run(root: Path, group: str, key: str, value: str) -> Path:
    """The most recently created finished `group` run under `root` whose config has `key` == `value`
    (`dlkit llm eval --method lora`)."""
    matches = []
    for path in find_runs([root]) if Path(root).is_dir() else []:
        run = Run.open(path)
        config = run.read_config()
        if run.group == group and str(config.get(key)) == value and run.status() == "finished":
            matches.append((config.get(META_KEY, {}).get("created", ""), run.config_path.stat().st_mtime, path))
    if not matches:
        raise RunError(
            f"--{key} {value}: no finished {group} run with {key} {value} under {root}; train one with "
            f"`dlkit {group} train --{key} {value}` or pass --run DIR"
        )
    return max(matches)[2]


def _walk(path: Path, depth: int, exports: bool) -> list[Path]:
    if (path / "config.json").is_file() or exports and path.is_dir() and export_group(path):
        return [path]
    if depth == 0 or not path.is_dir():
        return []
    return [run for child in sorted(path.iterdir()) if child.is_dir() for run in _walk(child, depth - 1, exports)]


def run_row(path: Path) -> dict[str, Any]:
    """One comparison row: identity, cost and every quality metric of a run."""
    run = Run.open(path)
    config = run.read_config()
    metrics = run.read_metrics()
    row: dict[str, Any] = {
        "run": str(path),
        "group": config.get(META_KEY, {}).get("group", "?"),
        "method": next((str(config[k]) for k in METHOD_KEYS if k in config), ""),
        "status": run.status(),
    }
    for key in FIXED_COLUMNS[4:]:
        if key in metrics:
            row[key] = metrics[key]
    for key, value in metrics.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and key not in row and key not in BOOKKEEPING:
            row[key] = value
    return row


# -- dlkit compare ----------------------------------------------------------------------------------


def read_rows(runs: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The comparison rows of `runs`, and one message per run that could not be read (corrupt metrics...)."""
    rows, broken = [], []
    for path in runs:
        try:
            rows.append(run_row(path))
        except RunError as exc:
            broken.append(str(exc))
    return rows, broken


def comparison_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The fixed columns the rows have, in order, then every other metric alphabetically."""
    columns = [c for c in FIXED_COLUMNS if any(c in r for r in rows)]
    return columns + sorted({k for r in rows for k in r} - set(columns))


def compare(cfg: CompareConfig) -> list[dict[str, Any]]:
    """One comparison table over run folders (printed in --format), the runs' loss curves with --plot; returns
    the rows."""
    checked(cfg)
    paths, fmt, sort = [Path(r) for r in cfg.runs], cfg.format, cfg.sort
    plot = Path(cfg.plot) if cfg.plot else None
    runs = find_runs(paths)
    if not runs:
        raise RunError(f"no run folders (with config.json) under {', '.join(map(str, paths))}")
    rows, broken = read_rows(runs)
    for message in broken:
        warn(f"skipped: {message}")
    if not rows:
        raise RunError("none of the runs could be read")
    columns = comparison_columns(rows)
    if sort:
        key = sort.lstrip("-")
        if key not in columns:
            raise DlkitError(f"--sort {key}: no such column; columns: {', '.join(columns)}")
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key, 0)), reverse=sort.startswith("-"))
    if plot is not None:
        from dlkit.core.plots import overlay_loss_curves

        overlay_loss_curves({Path(r["run"]).name: Run(Path(r["run"]), r["group"]).history() for r in rows}, plot)
    if MODE.json or fmt == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        print(buf.getvalue(), end="")
    elif fmt == "md":
        print(markdown_table(rows, columns))
    else:
        console().print(rich_comparison(rows, columns))
    return rows


def rich_comparison(rows: list[dict[str, Any]], columns: list[str]):
    """One column per run and one row per metric, which stays readable in 80 columns for a handful of
    runs; with many runs, one row per run (pipe --format csv to a spreadsheet for the full width)."""
    from rich.table import Table

    labels = _short_labels([r["run"] for r in rows])
    if len(rows) <= 6:
        table = Table(title=f"{len(rows)} runs")
        table.add_column("metric", style="bold")
        for label in labels:
            table.add_column(label, justify="right", overflow="fold")
        for column in columns[1:]:
            table.add_row(column, *[format_value(r[column]) if column in r else "" for r in rows])
        return table
    table = Table(title=f"{len(rows)} runs")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("run", "group", "method", "status") else "right", overflow="fold"
        )
    for label, row in zip(labels, rows, strict=True):
        table.add_row(label, *[format_value(row[c]) if c in row else "" for c in columns[1:]])
    return table


def _short_labels(paths: list[str]) -> list[str]:
    """Run paths without their common parent folder ("runs/llm/lora" and "runs/llm/dora" -> "lora", "dora")."""
    parts = [Path(p).parts for p in paths]
    common = 0
    while len(parts) > 1 and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    if len(parts) == 1:
        return [parts[0][-1]]
    return [str(Path(*p[common:])) for p in parts]


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row[c]) if c in row else "" for c in columns) + " |")
    return "\n".join(lines)


# -- dlkit runs list --------------------------------------------------------------------------------


def list_runs(cfg: RunsListConfig) -> list[dict[str, Any]]:
    """Every run (and exported model folder) under --root, named by its path relative to it (`dlkit runs list`;
    `list` itself is Python's)."""
    checked(cfg)  # ROOT is a folder
    root, format = Path(cfg.root), cfg.format
    rows = []
    for path in find_runs([root], max_depth=4, exports=True):
        name = str(path.relative_to(root)) if path != root else str(path)
        export = export_group(path)
        if export:
            rows.append(
                {
                    "run": name,
                    "group": export,
                    "method": _export_method(path, export),
                    "status": "export",
                    "created": "",
                }
            )
            continue
        try:
            row = run_row(path)
        except RunError as exc:
            row = {"status": f"broken ({exc})"}
        rows.append(
            {"run": name} | {k: row.get(k, "") for k in ("group", "method", "status")} | {"created": _created(path)}
        )
    if MODE.json or format == "json":
        print(json.dumps(rows, indent=2))
        return rows
    if not rows:
        warn(f"no dlkit run under {root} (a run folder holds the config.json written by a train command)")
        return rows
    from rich.table import Table

    table = Table(title=f"runs under {root}")
    for column in ("run", "group", "method", "status", "created"):
        table.add_column(column, overflow="fold")  # a long run path wraps instead of losing its distinguishing tail
    for row in rows:
        table.add_row(*[str(row[c]) for c in ("run", "group", "method", "status", "created")])
    console().print(table)
    return rows


def export_group(path: Path) -> str | None:
    """The group of an exported model folder (a `dlkit_<group>.json` beside the weights, no run config), else None."""
    if (path / "config.json").is_file() and META_KEY in _read_json(path / "config.json"):
        return None
    marker = next(iter(sorted(path.glob("dlkit_*.json"))), None)
    return marker.stem.removeprefix("dlkit_") if marker else None


def _export_method(path: Path, group: str) -> str:
    return str(_read_json(path / f"dlkit_{group}.json").get("method", ""))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _created(path: Path) -> str:
    return str(_read_json(path / "config.json").get(META_KEY, {}).get("created", ""))
