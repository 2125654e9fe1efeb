"""What the user sees: rich bars and tables on a terminal, plain lines otherwise.

`--json` sends the final metrics as JSON to stdout and every human line to stderr; `-q` keeps only
errors and results. Under torchrun / accelerate launch only the main process prints (errors excepted),
so N processes give one table, or one JSON document. Rich is imported lazily so `dlkit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dlkit.core.run import is_main_process


@dataclass
class OutputMode:
    json: bool = False
    quiet: bool = False
    debug: bool = False


MODE = OutputMode()


THIRD_PARTY = r"(transformers|peft|accelerate|torch|torchvision|open_clip|timm|huggingface_hub|datasets)(\.|$)"


def quiet_third_party() -> None:
    """Keep the libraries' own progress bars, advice and deprecation notes off the user's terminal and logs
    (dlkit shows its own progress; `--debug` keeps them). Environment variables are set before the libraries are
    imported, which the commands do lazily; a user's own setting of them wins."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights"/"Writing" bars
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=THIRD_PARTY)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip reports on the root logger ("No pretrained weights")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":  # a library imported before this call (several commands
        # in one process) read the variable already
        if "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    if os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1" and "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers warnings or progress bars inside the block (loading a model whose head is replaced on
    purpose reports "newly initialised" weights that are expected, not news; saving draws a bar), so errors stay
    one line; both are restored as they were."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def console(stderr: bool = False):
    """A rich Console: stdout for results, stderr for progress and notes (always stderr in --json mode)."""
    from rich.console import Console

    return Console(stderr=stderr or MODE.json, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    if not MODE.quiet and is_main_process():
        console(stderr=True).print(message, markup=False)


def warn(message: str) -> None:
    if is_main_process():
        console(stderr=True).print(f"warning: {message}", style="yellow", markup=False)


def emit(result: Any, human: Any = None) -> None:
    """The command's result: JSON on stdout with --json, else the human rendering (a rich renderable or text)."""
    if not is_main_process():
        return
    if MODE.json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    console().print(human if human is not None else result)


def metrics_table(metrics: dict[str, Any], title: str = "metrics"):
    """A two-column table of the scalar entries of a metrics dict."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, (dict, list)):
            continue
        table.add_row(key, format_value(value))
    return table


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


class TrainProgress:
    """A rich bar with step, epoch, loss, lr and ETA on a TTY; a plain line every few seconds otherwise."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, total_steps: int, initial: int = 0, enabled: bool = True):
        self.total, self.initial = total_steps, initial
        self.enabled = enabled and not MODE.quiet
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.last_plain = 0.0
        self.start = time.perf_counter()

    def __enter__(self) -> TrainProgress:
        if self.enabled and self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=False,
            )
            self.bar.start()
            self.task_id = self.bar.add_task("train", total=self.total, completed=self.initial, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, step: int, epoch: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        rate = (step - self.initial) / max(time.perf_counter() - self.start, 1e-9)
        status = f"epoch {epoch} loss {loss:.4f} lr {lr:.2e} {rate:.1f} it/s"
        if self.bar is not None:
            self.bar.update(self.task_id, completed=step, status=status)
        elif time.perf_counter() - self.last_plain >= self.PLAIN_EVERY_S or step == self.total:
            self.last_plain = time.perf_counter()
            print(f"step {step}/{self.total} {status}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(f"eval: {message}", markup=False)
        else:
            print(f"eval: {message}", file=sys.stderr, flush=True)


def track(items: Any, description: str, total: int | None = None):
    """Progress over an iterable (eval, feature caching, prediction) that vanishes when done."""
    if MODE.quiet or not sys.stderr.isatty():
        return items
    from rich.progress import track as rich_track

    return rich_track(items, description=description, total=total, console=console(stderr=True), transient=True)


def plan_table(result: dict[str, Any]) -> Any:
    """A `plan` command's result: GiB per part and in total, and whether it fits the budget; notes below."""
    from rich.table import Table

    table = Table(title=f"{result['what']} · {result['budget_source']}", caption="\n".join(result["notes"]))
    table.add_column("part")
    table.add_column("GiB", justify="right")
    for name, value in result["bytes"].items():
        table.add_row(name, f"{value / 2**30:.3f}")
    if "budget_gib" in result:
        table.add_row("fits" if result["fits"] else "does NOT fit", f"{result['budget_gib']:.3f}")
        table.add_row("largest batch that fits", str(result["max_batch_size"]))
    return table
