"""Commands generated from config dataclasses (dlkit.core.commands): checks declared once on the fields, required
fields from the command line or --config, positional and repeatable fields, a run's settings as defaults, and
the output policy before any work. A toy group runs through the real CLI machinery."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import typer
from checks import one_line_error

from dlkit.cli import run_app
from dlkit.core.commands import config_command
from dlkit.core.config import REQUIRED, checked, load_config, opt, run_field
from dlkit.core.errors import ConfigError

app = typer.Typer()
seen: list = []


@dataclass
class ToyConfig:
    """`dlkit toy echo`."""

    items: list[str] = opt(REQUIRED, "Things to echo.", argument=True)
    run: str | None = run_field("toy", required=False)
    model: str | None = opt(None, "Base model; default: the run's.", from_run="model", run_bound=True)
    seed: int | None = opt(None, "Seed; default: the run's.", from_run="seed")
    count: int = opt(1, "Times to echo.", min=1, max=3)
    rate: float = opt(0.5, "A rate.", above=0, below=1)
    mode: str = opt("plain", "How.", choices=("plain", "loud"))
    tag: list[str] = opt(["a"], "Tags (repeatable).", flags=("--tag", "-t"))
    output_dir: str | None = opt(None, "Where to write.", path="output")
    overwrite: bool = opt(False, "Replace an earlier echo.")

    command: ClassVar[tuple[str, str]] = ("toy", "echo")


@config_command(app, ToyConfig)
def echo(cfg: ToyConfig) -> None:
    """Echo the config back."""
    seen.append(cfg)


@app.command()
def other() -> None:
    """A second command, so the app keeps its verbs."""


@pytest.fixture
def toy(capsys):
    def invoke(*args):
        seen.clear()
        capsys.readouterr()
        code = run_app(app, ["echo", *map(str, args)])
        err = capsys.readouterr().err
        return type("Result", (), {"exit_code": code, "stderr": err, "stdout": "", "cfg": seen[0] if seen else None})()

    return invoke


def test_flags_arguments_and_repeatable_options(toy):
    result = toy("x", "y", "--count", "3", "-t", "b", "--tag", "c", "--mode", "loud")
    assert result.exit_code == 0, result.stderr
    assert (result.cfg.items, result.cfg.count, result.cfg.tag, result.cfg.mode) == (["x", "y"], 3, ["b", "c"], "loud")
    assert toy("x").cfg.tag == ["a"]  # the dataclass default when the flag is not given


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count must be in [1, 3] (got 0)"),
        (["--count", "4"], "--count must be in [1, 3] (got 4)"),
        (["--rate", "1"], "--rate must be in (0, 1) (got 1.0)"),
        (["--mode", "quiet"], "--mode quiet: choose one of plain, loud"),
    ],
)
def test_checks_declared_on_the_fields_name_the_flag(toy, args, message):
    one_line_error(toy("x", *args), message)


def test_required_from_the_command_line_or_the_config_file(toy, tmp_path):
    one_line_error(toy(), "ITEMS is required")
    (tmp_path / "c.yaml").write_text("items: [from-file]\ncount: 2\n")
    result = toy("--config", tmp_path / "c.yaml", "--count", "3")
    assert result.exit_code == 0, result.stderr
    assert (result.cfg.items, result.cfg.count) == (["from-file"], 3)  # the flag wins over the file
    (tmp_path / "bad.yaml").write_text("count: 9\n")
    one_line_error(toy("x", "--config", tmp_path / "bad.yaml"), "--count must be in [1, 3] (got 9)")


def test_the_same_checks_hold_for_a_config_built_in_python():
    with pytest.raises(ConfigError, match=r"--rate must be in \(0, 1\)"):
        checked(ToyConfig(items=["x"], rate=2.0))
    with pytest.raises(ConfigError, match="ITEMS is required"):
        load_config(ToyConfig, None, {})


def fake_run(path, model="builtin:tiny-gemma2", seed=7):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model": model, "seed": seed, "_dlkit": {"group": "toy"}}))
    return path


def test_a_run_gives_its_settings_as_defaults_and_a_contradicting_flag_is_refused(toy, tmp_path):
    run = fake_run(tmp_path / "run")
    result = toy("x", "--run", run)
    assert result.exit_code == 0, result.stderr
    assert (result.cfg.model, result.cfg.seed) == ("builtin:tiny-gemma2", 7)
    assert toy("x", "--run", run, "--seed", "3").cfg.seed == 3  # not run-bound: a flag may differ
    one_line_error(
        toy("x", "--run", run, "--model", "builtin:tiny-llama"),
        "--model builtin:tiny-llama contradicts --run",
        "trained with --model builtin:tiny-gemma2",
    )
    assert toy("x", "--run", run, "--model", "builtin:tiny-gemma2").exit_code == 0
    other = fake_run(tmp_path / "other")
    (other / "config.json").write_text(json.dumps({"model": "m", "_dlkit": {"group": "llm"}}))
    one_line_error(toy("x", "--run", other), "is a llm run, not a toy run")
    cfg = checked(ToyConfig(items=["x"], run=str(run)))  # the same from Python
    assert cfg.model == "builtin:tiny-gemma2"


def test_the_output_folder_is_checked_before_the_command_runs(toy, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):
        result = toy("x", "--output-dir", tmp_path / "mine", *extra)
        one_line_error(result, "holds files dlkit did not write (notes.txt)")
        assert result.cfg is None  # refused before the command's body ran
    run = fake_run(tmp_path / "run")
    one_line_error(toy("x", "--run", run, "--output-dir", tmp_path), "is or holds the input --run")
