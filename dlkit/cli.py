"""The `dlkit` command: global options, core commands, and the groups found through entry points.

Groups register under the `dlkit.groups` entry-point group (see pyproject.toml), so a third-party
package adds a group the same way dlkit's own do. Group CLI modules import only typer and their
config dataclasses; torch loads inside command bodies, which keeps `dlkit --help` fast.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated

import typer

from dlkit import __version__
from dlkit.core.commands import DlkitTyper, config_command
from dlkit.core.errors import DlkitError
from dlkit.core.progress import MODE
from dlkit.core.root import CompareConfig, InfoConfig, ReportConfig, RunsListConfig

ROOT_FLAGS = {"--json": "json", "-q": "quiet", "--quiet": "quiet", "--debug": "debug"}

app = DlkitTyper(
    name="dlkit",
    help="Hands-on deep learning, one command per job: "
    "[bold]dlkit GROUP VERB[/bold]. Every command runs offline on builtin:NAME models and data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the final metrics as JSON on stdout; human output goes to stderr.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and results.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Root options may also be given after the group and command (`dlkit clip eval ... --json`)."""
    MODE.json, MODE.quiet, MODE.debug = json_output, quiet, debug
    if not debug:
        from dlkit.core.progress import quiet_third_party

        quiet_third_party()


@config_command(app, InfoConfig)
def info(cfg: InfoConfig) -> None:
    """Versions, devices, installed extras and whether the Hugging Face Hub is reachable.

    Example: [bold]HF_HUB_OFFLINE=1 dlkit --json info[/bold]
    """
    from dlkit.core.overview import info as run_info

    run_info(cfg)


@config_command(app, CompareConfig)
def compare(cfg: CompareConfig) -> None:
    """One table of metrics.json across runs: params, time, memory, throughput, quality.

    Example: [bold]dlkit compare runs/llm/* --sort -val_loss --plot losses.png[/bold]
    """
    from dlkit.core.overview import compare as run_compare

    run_compare(cfg)


@config_command(app, ReportConfig)
def report(cfg: ReportConfig) -> None:
    """One report from run folders of any group: configs, comparison tables, loss curves and figures.

    Per group: the config, the comparison table and the loss curves overlaid; then each run's figures,
    tables and samples.

    Example: [bold]dlkit report runs/llm runs/caption/attn -o report.html --title "Homework 3"[/bold]
    Per-batch loss scatter: [bold]dlkit report runs/qa/bert --loss-scatter[/bold]
    """
    from dlkit.core.progress import emit
    from dlkit.report.build import report as run_report

    result = run_report(cfg)
    emit(result, f"wrote {result['report']}: {result['runs']} runs in {len(result['groups'])} groups")


runs_app = DlkitTyper(help="Inspect run folders.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@config_command(runs_app, RunsListConfig)
def runs_list(cfg: RunsListConfig) -> None:
    """The runs under ROOT with their status (finished, interrupted, failed, running) and exported models.

    Example: [bold]dlkit runs list runs/llm --format json[/bold]
    """
    from dlkit.core.overview import list_runs

    list_runs(cfg)


def _broken_group(name: str, error: Exception) -> typer.Typer:
    sub = typer.Typer(name=name, help=f"(unavailable: {error})")

    @sub.callback(invoke_without_command=True)
    def _fail() -> None:
        raise DlkitError(f"dlkit {name} cannot be loaded: {error}")

    return sub


_group_apps: dict[str, typer.Typer] = {}


def _group_app(ep: EntryPoint) -> typer.Typer:
    """The group's Typer app, loaded once per process."""
    if ep.name not in _group_apps:
        try:
            _group_apps[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the rest of the CLI
            _group_apps[ep.name] = _broken_group(ep.name, exc)
    return _group_apps[ep.name]


def _help_only(name: str, group: typer.Typer) -> typer.Typer:
    """A stand-in that lists the group in the root help without its commands: turning every group's
    commands into click commands is most of what `dlkit --help` would otherwise spend. Its help text is the
    one typer would show for the full group."""
    from typer.main import solve_typer_info_help
    from typer.models import TyperInfo

    text = solve_typer_info_help(TyperInfo(group))
    return typer.Typer(name=name, help=text, no_args_is_help=True, rich_markup_mode="rich")


def load_groups(first: str | None = None) -> None:
    """Mount the installed groups on the root app for a command line whose first word is `first`: a group's
    name mounts just that group (all `dlkit GROUP ...` needs); anything else mounts every group as a help-only
    stand-in (the root help lists them); None mounts every group in full. Each call replaces what the
    previous one mounted, so one process may run several commands."""
    eps = sorted(entry_points(group="dlkit.groups"), key=lambda e: e.name)
    names = {ep.name for ep in eps}
    app.registered_groups = [g for g in app.registered_groups if g.name not in names]
    for ep in eps:
        if first is None or ep.name == first:
            app.add_typer(_group_app(ep), name=ep.name)
        elif first not in names:
            app.add_typer(_help_only(ep.name, _group_app(ep)), name=ep.name)


def hoist_root_flags(argv: list[str]) -> list[str]:
    """Move --json/-q/--debug to the front, wherever they were typed (before a literal `--`)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in ROOT_FLAGS]
    rest = [a for a in argv[:end] if a not in ROOT_FLAGS] + argv[end:]
    return flags + rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = hoist_root_flags(list(sys.argv[1:] if argv is None else argv))
    first = next((a for a in args if not a.startswith("-")), "")  # root options take no values
    completing = "_DLKIT_COMPLETE" in os.environ  # shell completion may walk into any group
    load_groups(None if completing else first)
    return run_app(app, args)


def run_app(typer_app: typer.Typer, args: list[str]) -> int:
    """Run a Typer app the dlkit way: one-line errors with exit code 2 (130 when interrupted);
    `--debug` re-raises dlkit's own errors with their traceback. `args` reach the commands as the
    context's obj["argv"] (a run records its command line from there)."""
    debug = "--debug" in args
    try:
        result = typer_app(args=args, prog_name="dlkit", standalone_mode=False, obj={"argv": list(args)})
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except DlkitError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if not _is_click_error(exc):
            raise
        print(f"error: {_usage_message(exc)}", file=sys.stderr)
        return exc.exit_code  # type: ignore[attr-defined]
    return result if isinstance(result, int) else 0


def _is_click_error(exc: Exception) -> bool:
    """Click's usage/parameter errors (Typer may vendor its own copy of click, so match by class name)."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _usage_message(exc: Exception) -> str:
    """Click's message on one line, with the help command to run."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "dlkit"
    return f"{message} (see '{where} --help')"


if __name__ == "__main__":
    sys.exit(main())
