"""Every bad input the foundation handles: one line on stderr, exit code 2, nothing lost."""

import importlib.util
import json
import os
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
    one_line_error(
        *train("--config", tmp_path / "c.yaml", "--output-dir", tmp_path / "r"),
        "unknown key 'epoch'; did you mean 'epochs'?",
    )


@pytest.mark.parametrize(
    ("flag", "value", "bound"),
    [("--lr", "0", "> 0"), ("--lr", "-0.1", "> 0"), ("--batch-size", "0", ">= 1"), ("--batch-size", "-4", ">= 1")],
)
def test_non_positive_lr_and_batch_size(train, tmp_path, flag, value, bound):
    one_line_error(*train(flag, value, "--output-dir", tmp_path / "r"), f"{flag} must be {bound}")
    assert not (tmp_path / "r").exists()


def test_flags_override_the_file_and_bad_types_are_caught_by_the_parser(train, tmp_path):
    one_line_error(*train("--lr", "fast", "--output-dir", tmp_path / "r"), "Invalid value for '--lr'")


def test_existing_output_folder_is_kept(train, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    one_line_error(*train("--output-dir", out, "--max-steps", "1"), "holds files dlkit did not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "keep me"


def test_resume_without_checkpoint(train, tmp_path):
    (tmp_path / "r").mkdir()
    one_line_error(*train("--output-dir", tmp_path / "r", "--resume"), "no checkpoint to resume from")


# -- run folders: what --overwrite may delete, what --name and --output-dir may be ---------------------


def test_overwrite_refuses_a_folder_that_is_not_a_run(train, tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "train.csv").write_text("text,label\n")
    one_line_error(
        *train("--output-dir", out, "--overwrite", "--max-steps", "1"),
        f"--output-dir {out} holds files dlkit did not write (train.csv)",
    )
    assert sorted(os.listdir(out)) == ["train.csv"]  # not even a lock file was left there


def test_overwrite_refuses_a_config_json_dlkit_did_not_write(train, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"lr": 0.1}')
    one_line_error(*train("--output-dir", out, "--overwrite", "--max-steps", "1"), "did not write (config.json)")
    assert (out / "config.json").read_text() == '{"lr": 0.1}'


def test_overwrite_replaces_a_dlkit_run_and_never_a_file_added_to_it(train, tmp_path):
    out = tmp_path / "run"
    assert train("--output-dir", out, "--max-steps", "1")[0] == 0
    (out / "notes.txt").write_text("the user's, next to the run")
    one_line_error(*train("--output-dir", out, "--max-steps", "2", "--overwrite"), "did not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "the user's, next to the run"
    (out / "notes.txt").unlink()
    code, err = train("--output-dir", out, "--max-steps", "2", "--overwrite")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2


@pytest.mark.parametrize("name", ["../../victim", "a/b", "..", ".", "/tmp/x", "a\\b", " "])
def test_name_is_one_folder_name(train, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("keep")
    one_line_error(*train("--name", name, "--overwrite", "--max-steps", "1"), f"--name {name!r}: must be one")
    assert sorted(os.listdir(tmp_path)) == ["victim"] and (victim / "thesis.tex").read_text() == "keep"


@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
def test_output_dir_that_is_a_file(train, tmp_path, flag):
    file = tmp_path / "results.txt"
    file.write_text("keep")
    one_line_error(*train("--output-dir", file, "--max-steps", "1", *flag), "is a file, not a folder")
    assert file.read_text() == "keep"


def test_output_dir_below_a_file(train, tmp_path):
    (tmp_path / "f").write_text("keep")
    one_line_error(*train("--output-dir", tmp_path / "f" / "run", "--max-steps", "1"), "a parent of it is a file")


def test_unwritable_output_dir(train, tmp_path, monkeypatch):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root ignores the mode: refuse writes under `locked` the way the kernel would
        real_mkdir, real_open = Path.mkdir, os.open

        def refuse(path):
            if str(path).startswith(f"{locked}{os.sep}"):
                raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: refuse(self) or real_mkdir(self, *a, **k))
        monkeypatch.setattr(os, "open", lambda path, *a, **k: refuse(path) or real_open(path, *a, **k))
    try:
        one_line_error(*train("--output-dir", locked / "run", "--max-steps", "1"), "cannot create the output folder")
        one_line_error(*train("--output-dir", locked, "--max-steps", "1"), "cannot write in the output folder")
    finally:
        locked.chmod(0o700)


def test_runs_list_of_a_file_or_a_folder_without_runs(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = cli("runs", "list", tmp_path / "notes.txt")
    one_line_error(result.exit_code, result.stderr, "notes.txt: a file, not a folder")
    result = cli("runs", "list", tmp_path)
    assert result.exit_code == 0 and result.stderr.startswith("warning: no dlkit run under"), result.stderr
