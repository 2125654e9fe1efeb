"""Each bad input: exit code 2 and one line on stderr that says what is wrong."""

import shutil

import pytest


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


def test_no_run_folders_given(cli):
    assert "Missing argument 'RUN_DIR'" in one_line_error(cli("report"))


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


@pytest.mark.parametrize("where", ["missing-folder", "under-a-file", "a-folder", "read-only"])
def test_output_not_writable(cli, sweep, tmp_path, where):
    target = {"missing-folder": tmp_path / "no" / "such" / "r.html",
              "under-a-file": tmp_path / "file.txt" / "r.html",
              "a-folder": tmp_path,
              "read-only": tmp_path / "ro" / "r.html"}[where]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "ro").mkdir()
    if where == "read-only":
        (tmp_path / "ro").chmod(0o500)
        probe = tmp_path / "ro" / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            pytest.skip("this user can write into a read-only folder (root); the other cases cover it")
        except PermissionError:
            pass
    error = one_line_error(cli("report", sweep / "beta", "-o", target))
    assert f"-o {target}:" in error and ("cannot write there" in error or "is a folder" in error)
    (tmp_path / "ro").chmod(0o700)
