"""`dlkit report`: read run folders, group them, and gather each group's sections.

Per group: the effective config, the comparison table (`dlkit compare`'s rows and columns), the
runs' loss curves overlaid, then per run the sections of the group's hook (`<package>.report:
report_sections(run)`, found through the `dlkit.groups` entry points) or the generic ones.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dlkit import __version__
from dlkit.core.config import META_KEY, checked
from dlkit.core.errors import RunError
from dlkit.core.outputs import check_output_file
from dlkit.core.overview import comparison_columns, find_runs, read_rows
from dlkit.core.plots import loss_scatter, overlay_loss_curves
from dlkit.core.progress import warn
from dlkit.core.root import ReportConfig
from dlkit.core.run import Run
from dlkit.report.generic import cell, generic_sections
from dlkit.report.sections import Image, Section, Table, Text

RUN_FILES = ("config.json", "history.jsonl", "metrics.json")
WIDE_TABLE = 10  # comparison columns beyond which the table is shown with one column per run
MAX_RUN_COLUMNS = 6
Hook = Callable[[Run], list[Section]]


@dataclass
class RunReport:
    label: str
    run: Run
    row: dict[str, Any]
    sections: list[Section]


@dataclass
class GroupReport:
    name: str
    runs: list[RunReport]
    columns: list[str]  # of the comparison table (`dlkit compare`'s)
    config: Table
    config_summary: str
    loss_curves: Image | None

    def comparison(self) -> Table:
        """`dlkit compare`'s table; turned so runs are columns when it is too wide to read (and the runs few)."""
        rows = [r.row for r in self.runs]
        if len(self.columns) > WIDE_TABLE and len(rows) <= MAX_RUN_COLUMNS:
            return Table(
                [[c, *(row.get(c, "") for row in rows)] for c in self.columns if c != "run"],
                ["run", *(r.label for r in self.runs)],
            )
        return Table([[row.get(c, "") for c in self.columns] for row in rows], self.columns)


@dataclass
class Report:
    title: str
    groups: list[GroupReport]
    broken: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))
    version: str = __version__

    @property
    def num_runs(self) -> int:
        return sum(len(g.runs) for g in self.groups)


def report(cfg: ReportConfig) -> dict[str, Any]:
    """Write the report of the runs under cfg.runs (and, with --loss-scatter, each run's plots/loss_scatter.png);
    returns what was written (for --json). The report file is new or one dlkit wrote (--overwrite), and so is a
    Markdown report's images folder."""
    checked(cfg)
    paths, title = [Path(r) for r in cfg.runs], cfg.title
    output = Path(cfg.output) if cfg.output else None
    fmt = cfg.format or ("md" if output is not None and output.suffix.lower() in (".md", ".markdown") else "html")
    output = output or Path(f"report.{fmt}")
    check_output_file(output, "--output", cfg.overwrite)
    check_writable(output)
    folders = run_folders(paths)
    if cfg.loss_scatter:
        for path in folders:
            run = Run.open(path)
            loss_scatter(run.history(), run.plots_dir / "loss_scatter.png", f"{path.name}: training loss per batch")
    rows, broken = read_rows(folders)
    if not rows:
        raise RunError(f"none of the runs could be read ({'; '.join(broken)})")
    for message in broken:
        warn(f"not in the report: {message}")
    from dlkit.report.html import write_html
    from dlkit.report.markdown import write_markdown

    with tempfile.TemporaryDirectory(prefix="dlkit-report-") as scratch:
        built = collect(rows, broken, title, Path(scratch))
        try:
            written = write_markdown(built, output, cfg.overwrite) if fmt == "md" else write_html(built, output)
        except OSError as exc:  # the disk filled up, the folder went away...
            raise RunError(f"--output {output}: writing the report failed ({exc.strerror or exc})") from None
    return {
        "report": str(output),
        "format": fmt,
        "runs": built.num_runs,
        "groups": {g.name: len(g.runs) for g in built.groups},
        "broken": broken,
        "files": [str(p) for p in written],
    }


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders under each path; a path holding none is an error that names what is missing."""
    if not paths:
        raise RunError("no run folders given; pass run folders or a folder of runs (e.g. runs/llm)")
    found: list[Path] = []
    for path in paths:
        runs = find_runs([path])
        if not runs:
            if Path(path).is_file():
                raise RunError(f"{path} is a file, not a run folder; pass the folder that holds config.json")
            missing = [name for name in RUN_FILES if not (Path(path) / name).exists()]
            raise RunError(
                f"{path} is not a dlkit run folder: {', '.join(missing)} missing, and no folder under it holds a run"
            )
        found.extend(runs)
    return sorted(dict.fromkeys(found))


def check_writable(output: Path) -> None:
    """Fail before any work when the report cannot be written there (what may be replaced: check_output_file)."""
    folder = output.parent
    if not folder.is_dir():
        raise RunError(f"--output {output}: cannot write there, {folder} is not an existing folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".dlkit-report-"):
            pass
        if output.exists() and not os.access(output, os.W_OK):
            raise PermissionError("permission denied")
    except OSError as exc:
        raise RunError(f"--output {output}: cannot write there ({exc.strerror or exc})") from None


def collect(rows: list[dict[str, Any]], broken: list[str], title: str, scratch: Path) -> Report:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    return Report(
        title, [group_report(name, group_rows, scratch) for name, group_rows in sorted(groups.items())], broken
    )


def group_report(name: str, rows: list[dict[str, Any]], scratch: Path) -> GroupReport:
    labels = run_labels([Path(r["run"]) for r in rows])
    hook = report_hook(name)
    runs = []
    for label, row in zip(labels, rows, strict=True):
        run = Run.open(row["run"])
        runs.append(RunReport(label, run, row, run_sections(run, hook, name)))
    config, summary = config_table(runs)
    return GroupReport(name, runs, comparison_columns(rows), config, summary, loss_curves(name, runs, scratch))


def run_labels(paths: list[Path]) -> list[str]:
    """The folder names, or parent/name where two runs share a name (two sweeps with the same run names)."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def run_sections(run: Run, hook: Hook | None, group: str) -> list[Section]:
    if hook is None:
        return generic_sections(run)
    try:
        sections = list(hook(run))
        if not all(
            isinstance(s, Section) and all(isinstance(p, (Text, Table, Image)) for p in s.parts) for s in sections
        ):
            raise TypeError("report_sections must return Sections whose parts are Text, Table or Image")
    except Exception as exc:  # a broken hook must not lose the rest of the report
        message = f"the {group} report hook failed on {run.dir} ({type(exc).__name__}: {exc}); generic sections used"
        warn(message)
        return [Section("Report hook failed", [Text(message)]), *generic_sections(run)]
    return sections


def report_hook(group: str) -> Hook | None:
    """`report_sections` from the group's `report` module: the sibling of the module its entry point names
    (`dlkit.llm.cli:app` -> `dlkit.llm.report`). None when the group has no such module or function."""
    for ep in entry_points(group="dlkit.groups"):
        if ep.name != group:
            continue
        module_name = ep.value.split(":")[0]
        package = module_name.rpartition(".")[0] or module_name
        try:
            module = importlib.import_module(f"{package}.report")
        except ModuleNotFoundError as exc:
            if exc.name in (f"{package}.report", package):
                return None
            warn(f"{package}.report cannot be imported ({exc}); the {group} runs get the generic sections")
            return None
        except Exception as exc:
            warn(f"{package}.report cannot be imported ({exc}); the {group} runs get the generic sections")
            return None
        hook = getattr(module, "report_sections", None)
        return hook if callable(hook) else None
    return None


def config_table(runs: list[RunReport]) -> tuple[Table, str]:
    """Config keys as rows and runs as columns; keys whose values differ between runs come first, highlighted."""
    configs = [r.run.read_config() for r in runs]
    keys = list(dict.fromkeys(k for c in configs for k in c if k != META_KEY))
    values = {k: [cell(c.get(k, "")) if c.get(k) is not None else "—" for c in configs] for k in keys}
    differ = [k for k in keys if len(set(values[k])) > 1]
    ordered = differ + [k for k in keys if k not in differ]
    commands = [c.get(META_KEY, {}).get("command", "") for c in configs]
    rows = [[k, *values[k]] for k in ordered]
    if any(commands):
        rows.append(["command", *commands])
    columns = ["key", *(r.label for r in runs)] if len(runs) > 1 else ["key", "value"]
    summary = f"{len(keys)} settings" + (f", {len(differ)} differ between the runs" if len(runs) > 1 else "")
    return Table(rows, columns, highlight=list(range(len(differ)))), summary


def loss_curves(group: str, runs: list[RunReport], scratch: Path) -> Image | None:
    """The group's train (solid) and val (dashed) losses, runs overlaid, as `dlkit compare --plot` draws them."""
    histories = {r.label: r.run.history() for r in runs}
    if not any(("loss" in h or "val_loss" in h) for history in histories.values() for h in history):
        return None
    path = overlay_loss_curves(histories, scratch / f"loss-{group}.png")
    return Image(path, f"{group}: train (solid) and validation (dashed) loss per optimizer step")
