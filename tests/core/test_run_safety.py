"""Run folders under concurrency and crashes: one writer per run (an OS lock a killed process releases),
and a SIGKILL while a checkpoint or a report is written leaves no partial file under its real name.
Kills happen at points the process itself reaches (tests/core/crash_run.py), never after a sleep."""

import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from dlkit.cli import main, run_app
from dlkit.core.config import TrainConfig
from dlkit.core.errors import RunError
from dlkit.core.outputs import LOCK_FILE
from dlkit.core.outputs import lock_folder as lock_run_folder
from dlkit.core.run import Run

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import regression_run  # noqa: E402

CRASH = HERE / "crash_run.py"
HOLD = (
    "import sys; from pathlib import Path; from dlkit.core.outputs import lock_folder as lock_run_folder; "
    "lock = lock_run_folder(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()"
)
TRAIN = [
    "--max-steps",
    "6",
    "--save-every",
    "2",
    "--log-every",
    "1",
    "--batch-size",
    "16",
    "--dropout",
    "0.3",
    "--keep-last",
    "3",
]


@contextmanager
def held_by_another_process(folder: Path):
    """A second process holding the run folder's lock until the block ends (then SIGKILLed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def train(capsys, *args):
    capsys.readouterr()
    code = run_app(regression_run.app, ["train", *map(str, args)])
    return code, capsys.readouterr().err


def losses(out: Path) -> list[float]:
    records = map(json.loads, (out / "history.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_a_second_writer_is_refused_with_the_holders_pid_until_the_holder_dies(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, "--output-dir", out, *TRAIN)[0] == 0
    for ckpt in Run(out, "core").checkpoints()[1:]:  # as if killed after step 2
        shutil.rmtree(ckpt)
    history = (out / "history.jsonl").read_text()
    with held_by_another_process(out) as holder:
        code, err = train(capsys, "--output-dir", out, *TRAIN, "--resume")
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert f"in use by another dlkit process (pid {holder.pid})" in err
        assert (out / "history.jsonl").read_text() == history  # the refused resume wrote nothing
        code, err = train(capsys, "--output-dir", out, *TRAIN, "--overwrite")
        assert code == 2 and f"pid {holder.pid}" in err and (out / "config.json").is_file()
    # the holder was SIGKILLed: the OS dropped its lock, so the resume runs
    code, err = train(capsys, "--output-dir", out, *TRAIN, "--resume")
    assert code == 0 and "not exact" not in err, err
    assert [
        r["step"] for r in map(json.loads, (out / "history.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ] == list(range(1, 7))  # each step once: no duplicated history


def test_two_fresh_runs_into_one_new_folder_one_wins(tmp_path, capsys):
    out = tmp_path / "new"
    out.mkdir()  # the other process created it and holds it, nothing written yet
    with held_by_another_process(out) as holder:
        code, err = train(capsys, "--output-dir", out, *TRAIN)
        assert code == 2 and f"pid {holder.pid}" in err, err
        assert sorted(os.listdir(out)) == [LOCK_FILE]


def test_lock_is_per_process_and_released_by_close(tmp_path):
    run = Run.create("core", TrainConfig(output_dir=str(tmp_path / "r")), "x")
    assert lock_run_folder(run.dir) is run._claim.lock  # the same process may open its own run again
    assert (run.dir / LOCK_FILE).read_text().strip() == str(os.getpid())
    run.close()
    with held_by_another_process(run.dir):
        with pytest.raises(RunError, match="in use by another dlkit process"):
            Run.create("core", TrainConfig(output_dir=str(run.dir)), "x")


@pytest.mark.slow
def test_torchrun_into_a_held_folder_stops_both_ranks(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "regression_run.py"),
        "--output-dir",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "8",
    ]
    with held_by_another_process(out) as holder:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert f"in use by another dlkit process (pid {holder.pid})" in proc.stderr
    assert sorted(os.listdir(out)) == [LOCK_FILE]  # neither rank wrote: only rank 0 checks and locks
    # (test_processes.py::test_two_processes_with_torchrun trains 2 ranks into a free folder: rank 0 locks it)


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_leaves_no_partial_checkpoint(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert train(capsys, "--output-dir", whole, *TRAIN)[0] == 0
    out = tmp_path / "cut"
    crashed = subprocess.run(
        [sys.executable, str(CRASH), "checkpoint", "2", "--output-dir", str(out), *TRAIN],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    run = Run(out, "core")
    partial = out / "checkpoints" / "step_0000004.tmp"
    assert (partial / "optimizer.bin").is_file()  # half written, never renamed into place...
    assert [p.name for p in run.checkpoints()] == ["step_0000002"]  # ...so resume sees only whole checkpoints
    assert not run.metrics_path.exists()
    code, err = train(capsys, "--output-dir", out, *TRAIN, "--resume")
    assert code == 0, err
    assert not partial.exists()
    assert losses(out) == losses(whole)  # nothing lost: the resumed run equals the uninterrupted one


def test_sigkill_during_report_keeps_the_previous_report(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(capsys, "--output-dir", run, "--max-steps", "2")[0] == 0
    report = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(report), "--title", "last week's report"]) == 0
    last_week = report.read_text()
    crashed = subprocess.run(
        [sys.executable, str(CRASH), "report", str(run), "-o", str(report), "--overwrite"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert report.read_text() == last_week
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".report.html.")]
    assert len(temps) == 1 and 0 < temps[0].stat().st_size  # the half-written temp, under a hidden name
    assert main(["report", str(run), "-o", str(report), "--overwrite"]) == 0
    assert "last week" not in report.read_text() and "</html>" in report.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.html.")]  # the stale temp is gone


def test_unreadable_rng_state_says_the_resume_is_not_exact(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, "--output-dir", out, *TRAIN)[0] == 0
    first, *later = Run(out, "core").checkpoints()
    for ckpt in later:
        shutil.rmtree(ckpt)
    (first / "random_states_0.pkl").write_bytes(b"not a pickle")
    code, err = train(capsys, "--output-dir", out, *TRAIN, "--resume")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "not exact" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {first / 'random_states_0.pkl'} is unreadable")


def test_a_run_folder_from_before_markers_still_resumes_and_is_replaced_only_when_it_holds_run_files(tmp_path, capsys):
    from dlkit.core.outputs import MARKER

    out = tmp_path / "old-run"
    assert train(capsys, "--output-dir", out, "--max-steps", "3", *TRAIN[2:])[0] == 0  # stopped at step 3 of 6
    (out / MARKER).unlink()  # as an older dlkit left it: config.json with the _dlkit block, no marker
    code, err = train(capsys, "--output-dir", out, *TRAIN, "--resume")
    assert code == 0, err
    assert [
        r["step"] for r in map(json.loads, (out / "history.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ] == list(range(1, 7))
    assert not (out / MARKER).exists()  # resuming writes no marker: what the folder holds is not all known
    (out / "notes.txt").write_text("mine")
    code, err = train(capsys, "--output-dir", out, *TRAIN, "--overwrite")
    assert code == 2 and "did not write (notes.txt)" in err and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert train(capsys, "--output-dir", out, *TRAIN, "--overwrite")[0] == 0
    assert (out / MARKER).is_file()
