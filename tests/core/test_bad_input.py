"""Every bad input the foundation handles: one line on stderr, exit code 2, nothing lost."""

import importlib.util
from pathlib import Path

import pytest

from dlkit.cli import run_app

spec = importlib.util.spec_from_file_location("regression_run", Path(__file__).with_name("regression_run.py"))
regression_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regression_run)


@pytest.fixture
def train(capsys):
    def invoke(*args):
        capsys.readouterr()
        code = run_app(regression_run.app, ["train", *map(str, args)])
        return code, capsys.readouterr().err

    return invoke


def one_line_error(code, err, expected):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


def test_missing_config_file(train, tmp_path):
    one_line_error(*train("--config", tmp_path / "nope.yaml", "--output-dir", tmp_path / "r"), "not found")


def test_invalid_yaml(train, tmp_path):
    (tmp_path / "c.yaml").write_text("lr: [0.1\n")
    one_line_error(*train("--config", tmp_path / "c.yaml", "--output-dir", tmp_path / "r"), "invalid YAML at line")


def test_unknown_config_key(train, tmp_path):
    (tmp_path / "c.yaml").write_text("epoch: 3\n")
    one_line_error(*train("--config", tmp_path / "c.yaml", "--output-dir", tmp_path / "r"),
                   "unknown key 'epoch'; did you mean 'epochs'?")


@pytest.mark.parametrize(("flag", "value"), [("--lr", "0"), ("--lr", "-0.1"), ("--batch-size", "0"),
                                             ("--batch-size", "-4")])
def test_non_positive_lr_and_batch_size(train, tmp_path, flag, value):
    one_line_error(*train(flag, value, "--output-dir", tmp_path / "r"), f"{flag} must be > 0")
    assert not (tmp_path / "r").exists()


def test_flags_override_the_file_and_bad_types_are_caught_by_the_parser(train, tmp_path):
    one_line_error(*train("--lr", "fast", "--output-dir", tmp_path / "r"), "Invalid value for '--lr'")


def test_existing_output_folder_is_kept(train, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    one_line_error(*train("--output-dir", out, "--max-steps", "1"), "already exists; pass --overwrite")
    assert (out / "notes.txt").read_text() == "keep me"


def test_resume_without_checkpoint(train, tmp_path):
    (tmp_path / "r").mkdir()
    one_line_error(*train("--output-dir", tmp_path / "r", "--resume"), "no checkpoint to resume from")
