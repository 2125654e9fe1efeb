"""Each bad input: exit code 2 and one line on stderr that says what is wrong."""

import shutil
from pathlib import Path

import pytest
from checks import one_line_error


def test_no_run_folders_given(cli):
    assert "RUNS is required" in one_line_error(cli("report"))


def test_no_run_folders_given_to_the_function(tmp_path):
    from dlkit.core.errors import RunError
    from dlkit.core.root import ReportConfig
    from dlkit.report.build import report

    with pytest.raises(RunError, match="no run folders given"):
        report(ReportConfig(runs=[], output=str(tmp_path / "r.html")))


def test_no_run_folders_found(cli, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    error = one_line_error(cli("report", tmp_path / "empty", "-o", tmp_path / "r.html"))
    assert "empty is not a dlkit run folder: config.json, history.jsonl, metrics.json missing" in error
    assert not (tmp_path / "r.html").exists()


def test_missing_folder(cli, tmp_path):
    assert "nope: no such folder" in one_line_error(cli("report", tmp_path / "nope", "-o", tmp_path / "r.html"))


def test_folder_that_is_not_a_run_says_what_is_missing(cli, sweep, tmp_path):
    half = tmp_path / "half"
    shutil.copytree(sweep / "beta" / "probe", half, ignore=shutil.ignore_patterns("checkpoints"))
    (half / "config.json").unlink()
    error = one_line_error(cli("report", sweep / "alpha", half, "-o", tmp_path / "r.html"))
    assert f"{half} is not a dlkit run folder: config.json missing" in error


def test_a_file_is_not_a_run(cli, sweep, tmp_path):
    error = one_line_error(cli("report", sweep / "alpha" / "fast" / "metrics.json", "-o", tmp_path / "r.html"))
    assert "metrics.json is a file, not a run folder" in error


def test_every_run_corrupt(cli, sweep, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sweep / "alpha" / "slow", run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "metrics.json").write_text("{not json")
    error = one_line_error(cli("report", run, "-o", tmp_path / "r.html"))
    assert "none of the runs could be read" in error and "metrics.json is corrupt" in error


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this user cannot write into: a chmod 500 one, or /sys for root (whom modes do not stop)."""
    for folder in [tmp_path / "ro", Path("/sys")]:
        if folder == tmp_path / "ro":
            folder.mkdir()
            folder.chmod(0o500)
        try:
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
        except OSError:
            return folder
    pytest.skip("no folder this user cannot write into")


@pytest.mark.parametrize("where", ["missing-folder", "under-a-file", "a-folder", "read-only"])
def test_output_not_writable(cli, sweep, tmp_path, where):
    (tmp_path / "file.txt").write_text("x")
    target = {
        "missing-folder": lambda: tmp_path / "no" / "such" / "r.html",
        "under-a-file": lambda: tmp_path / "file.txt" / "r.html",
        "a-folder": lambda: tmp_path,
        "read-only": lambda: read_only_folder(tmp_path) / "r.html",
    }[where]()
    try:
        error = one_line_error(cli("report", sweep / "beta", "-o", target))
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o700)
    assert f"--output {target}:" in error
    assert {
        "missing-folder": "is not an existing folder",
        "under-a-file": "is not an existing folder",
        "a-folder": "is a folder",
        "read-only": "cannot write there (Permission denied)",
    }[where] in error
