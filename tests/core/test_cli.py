import csv
import io
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from dlkit.cli import hoist_root_flags
from dlkit.core.config import TrainConfig
from dlkit.core.engine import fit
from dlkit.core.reference import RegressionTask
from dlkit.core.run import Run

GROUPS = sorted(ep.name for ep in entry_points(group="dlkit.groups"))


def imported_modules(*args: str) -> tuple[int, set[str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dlkit", *args], capture_output=True, text=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    return proc.returncode, modules


@pytest.mark.parametrize("args", [["--help"], *[[g, "--help"] for g in GROUPS]], ids=lambda a: " ".join(a))
def test_help_does_not_import_heavy_libraries(args):
    code, modules = imported_modules(*args)
    assert code == 0
    assert not modules & {"torch", "transformers", "accelerate", "peft", "open_clip", "torchvision", "matplotlib"}


def test_root_help_lists_every_group_and_a_group_gets_its_commands_in_the_same_process(cli, capsys, monkeypatch):
    import typer

    from dlkit.cli import app, main

    result = cli("--help")
    assert result.exit_code == 0 and all(f" {g} " in result.stdout for g in GROUPS)
    assert "Instruction fine-tuning of causal LMs" in result.stdout
    assert typer.main.get_command(app).commands["llm"].commands == {}  # root help builds no group's commands
    result = cli("llm", "--help")
    assert result.exit_code == 0 and " train " in result.stdout and " generate " in result.stdout
    monkeypatch.setenv("_DLKIT_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "dlkit llm tr")
    monkeypatch.setenv("COMP_CWORD", "2")
    with pytest.raises(SystemExit):  # completion exits by itself
        main([])
    assert capsys.readouterr().out.split() == ["train"]


def test_a_plugin_group_documented_by_its_callback_keeps_its_help_in_the_root_listing():
    import typer

    from dlkit.cli import _help_only

    plugin = typer.Typer()

    @plugin.callback()
    def _main() -> None:
        """Helps with plugins."""

    assert _help_only("plugin", plugin).info.help == "Helps with plugins."
    assert _help_only("plugin", typer.Typer(help="Given help.")).info.help == "Given help."


def test_root_flags_are_accepted_anywhere():
    assert hoist_root_flags(["clip", "eval", "--run", "x", "--json", "-q"]) == [
        "--json",
        "-q",
        "clip",
        "eval",
        "--run",
        "x",
    ]
    assert hoist_root_flags(["x", "--", "--json"]) == ["x", "--", "--json"]


def test_unknown_group_and_command_exit_2_with_one_line(cli):
    result = cli("nope")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "No such command 'nope'" in result.stderr
    result = cli("runs", "lst")
    assert result.exit_code == 2 and "Did you mean 'list'?" in result.stderr


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("dlkit ")


def test_info_json(cli):
    result = cli("info", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["versions"]["torch"] and report["devices"]["cpu_cores"] >= 1
    assert report["hub_reachable"] in (True, False) and "llm" in report["extras"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for name, lr in [("slow", 1e-3), ("fast", 3e-2)]:
        cfg = TrainConfig(output_dir=str(root / name), max_steps=8, lr=lr, batch_size=32, eval_every=4)
        fit(RegressionTask(), cfg, Run.create("core", cfg, name))
    return root


def test_compare_formats_and_sort(cli, two_runs, tmp_path):
    result = cli("compare", two_runs, "--format", "csv", "--sort", "val_loss", "--plot", tmp_path / "loss.png")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"].rsplit("/", 1)[-1] for r in rows] == ["fast", "slow"]
    assert {"trainable_params", "train_seconds", "peak_memory_mb", "val_loss"} <= set(rows[0])
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    md = cli("compare", two_runs, "--format", "md").stdout
    assert md.startswith("| run | group |") and len(md.strip().splitlines()) == 4
    as_json = json.loads(cli("--json", "compare", two_runs / "slow").stdout)
    assert as_json[0]["group"] == "core" and as_json[0]["status"] == "finished"


@pytest.mark.parametrize("order", [["slow", "fast"], ["fast", "slow"]])
def test_compare_keeps_the_order_given(cli, two_runs, order):
    result = cli("compare", *[two_runs / name for name in order], "--format", "json")
    assert [Path(row["run"]).name for row in json.loads(result.stdout)] == order
    table = cli("compare", *[two_runs / name for name in order]).stdout
    assert table.index(order[0]) < table.index(order[1])


def test_compare_reports_a_broken_run_and_goes_on(cli, two_runs, tmp_path):
    import shutil

    shutil.copytree(two_runs / "slow", tmp_path / "broken")
    (tmp_path / "broken/metrics.json").write_text("{not json")
    result = cli("compare", two_runs / "fast", tmp_path / "broken", "--format", "csv")
    assert result.exit_code == 0 and "metrics.json is corrupt" in result.stderr
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 1


def test_compare_without_runs_is_an_error(cli, tmp_path):
    result = cli("compare", tmp_path)
    assert result.exit_code == 2 and "no run folders" in result.stderr


def test_runs_list(cli, two_runs):
    result = cli("--json", "runs", "list", two_runs)
    assert result.exit_code == 0
    assert {(r["run"].rsplit("/", 1)[-1], r["status"]) for r in json.loads(result.stdout)} == {
        ("fast", "finished"),
        ("slow", "finished"),
    }


def test_runs_list_tells_long_runs_apart_and_knows_exports(cli, two_runs, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "runs"
    long = "a-very-long-experiment-name-that-only-differs-at-the-end"
    for tail in ("lr1e-3", "lr3e-2"):
        shutil.copytree(two_runs / "slow", root / "sweep" / f"{long}-{tail}")
    export = root / "exports" / "adapter"
    export.mkdir(parents=True)
    (export / "adapter_config.json").write_text("{}")
    (export / "dlkit_llm.json").write_text(json.dumps({"method": "lora"}))
    rows = json.loads(cli("runs", "list", root, "--format", "json").stdout)
    assert {r["run"]: r["status"] for r in rows} == {
        f"sweep/{long}-lr1e-3": "finished",
        f"sweep/{long}-lr3e-2": "finished",
        "exports/adapter": "export",
    }
    assert next(r for r in rows if r["status"] == "export")["method"] == "lora"
    monkeypatch.setenv("COLUMNS", "80")
    table = cli("runs", "list", root)
    assert table.exit_code == 0
    flat = "".join(table.stdout.split()).replace("│", "")  # folded cells, joined back
    assert "lr1e-3" in flat and "lr3e-2" in flat and "…" not in table.stdout


def test_a_group_whose_extra_is_missing_lists_its_help_and_names_the_extra(capsys):
    import typer

    from dlkit.cli import run_app
    from dlkit.core.commands import group_app

    app = typer.Typer()
    sub = group_app("demo", "A demo group.", extra="demo", requires=("no_such_module_for_dlkit",))

    @sub.command()
    def run() -> None:
        """Does nothing."""

    app.add_typer(sub, name="demo")
    assert run_app(app, ["demo", "--help"]) == 0 and "A demo group." in capsys.readouterr().out
    assert run_app(app, ["demo", "run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: dlkit demo needs the 'demo' extra (missing: no_such_module_for_dlkit); "
        "install it with: pip install 'dlkit[demo]'"
    )


def test_every_command_has_an_example_in_its_help():
    import typer

    from dlkit.cli import app, load_groups

    load_groups()

    def leaves(command, path):
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield " ".join(path), command
        for name, sub in (subcommands or {}).items():
            yield from leaves(sub, [*path, name])

    commands = dict(leaves(typer.main.get_command(app), ["dlkit"]))
    assert len(commands) > 30 and "dlkit llm train" in commands and "dlkit runs list" in commands
    assert [name for name, c in commands.items() if "Example:" not in (c.help or "")] == []


def test_library_progress_bars_stay_off_when_the_library_was_imported_first(monkeypatch, capsys):
    """A second command in one process: transformers was imported before quiet_third_party() ran, so the
    environment variable alone would come too late; saving a model must still print no 'Writing' bar."""
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    from dlkit.core.progress import quiet_third_party

    enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    try:
        quiet_third_party()
        assert are_progress_bars_disabled() and not transformers.utils.logging.is_progress_bar_enabled()
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's own choice wins
        enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        quiet_third_party()
        assert transformers.utils.logging.is_progress_bar_enabled()
    finally:
        transformers.utils.logging.disable_progress_bar()
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
