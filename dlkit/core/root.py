"""The configs of the commands on the root app (`dlkit info`, `compare`, `report`, `runs list`): like every
group's, their flags are generated from these dataclasses. No heavy imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dlkit.core.config import REQUIRED, opt

RUNS_HELP = "Run folders, or parents of run folders (a sweep)."


@dataclass
class InfoConfig:
    """`dlkit info`: nothing to set."""

    command: ClassVar[tuple[str, str]] = ("dlkit", "info")


@dataclass
class CompareConfig:
    """`dlkit compare`."""

    runs: list[str] = opt(REQUIRED, RUNS_HELP, argument=True, path="run", example="{run}")
    format: Literal["table", "md", "csv", "json"] = opt("table", "Output format.")
    sort: str | None = opt(None, "Sort by this column (prefix '-' for descending).")
    plot: str | None = opt(None, "Write the runs' loss curves overlaid to this PNG.", path="output_file")
    overwrite: bool = opt(False, "Replace a --plot PNG an earlier dlkit compare wrote.", saved=False)

    command: ClassVar[tuple[str, str]] = ("dlkit", "compare")


@dataclass
class ReportConfig:
    """`dlkit report`."""

    runs: list[str] = opt(REQUIRED, RUNS_HELP, argument=True, path="run", example="{run}")
    output: str | None = opt(
        None,
        "Report file. Default: report.html (report.md with --format md).",
        flags=("-o", "--output"),
        path="output_file",
    )
    title: str = opt("dlkit report", "Title at the top of the report.")
    format: Literal["html", "md"] | None = opt(
        None,
        "html: one self-contained file (images embedded); md: Markdown "
        "plus an images folder. Default: from the -o suffix, else html.",
    )
    loss_scatter: bool = opt(
        False,
        "Also draw each run's logged batch losses as a scatter "
        "(RUN/plots/loss_scatter.png; train with --log-every 1 for every batch).",
    )
    overwrite: bool = opt(False, "Replace a report (and its images folder) an earlier dlkit report wrote.", saved=False)

    command: ClassVar[tuple[str, str]] = ("dlkit", "report")


@dataclass
class RunsListConfig:
    """`dlkit runs list`."""

    root: str = opt("runs", "Folder to search for runs.", argument=True, path="folder")
    format: Literal["table", "json"] = opt("table", "Output format.")

    command: ClassVar[tuple[str, str]] = ("runs", "list")
