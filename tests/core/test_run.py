import json

import pytest

from dlkit.core.config import TrainConfig
from dlkit.core.errors import RunError
from dlkit.core.run import Run, atomic_write_json, read_jsonl


def cfg_for(path, **kw):
    return TrainConfig(output_dir=str(path), **kw)


def test_existing_folder_is_never_overwritten_without_a_flag(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    for overwrite in (False, True):  # a folder dlkit did not make is refused, --overwrite or not
        with pytest.raises(RunError, match=r"holds files dlkit did not write \(keep.txt\)"):
            Run.create("core", cfg_for(out, overwrite=overwrite), "x")
    assert (out / "keep.txt").read_text() == "precious" and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    run = Run.create("core", cfg_for(out / "inner"), "x")
    run.write_config(TrainConfig())
    run.close()
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        Run.create("core", cfg_for(out / "inner"), "x")
    Run.create("core", cfg_for(out / "inner", overwrite=True), "x").close()
    assert not (out / "inner" / "config.json").exists()


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        Run.create("core", cfg_for(tmp_path / "nope", resume=True), "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        Run.create("core", cfg_for(tmp_path / "empty", resume=True), "x")


def test_default_folder_is_runs_group_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run.create("charrnn", TrainConfig(name="shakespeare"), "lstm")
    assert run.dir == tmp_path.joinpath("runs", "charrnn", "shakespeare").relative_to(tmp_path)


def test_open_refuses_other_groups_and_non_runs(tmp_path):
    run = Run.create("llm", cfg_for(tmp_path / "r"), "x")
    run.write_config(TrainConfig())
    assert Run.open(tmp_path / "r", "llm").group == "llm"
    with pytest.raises(RunError, match="is a llm run, not a caption run"):
        Run.open(tmp_path / "r", "caption")
    with pytest.raises(RunError, match="not a dlkit run folder"):
        Run.open(tmp_path, "llm")


def test_history_truncation_and_metrics_csv(tmp_path):
    run = Run.create("core", cfg_for(tmp_path / "r"), "x")
    for step in range(1, 7):
        run.log({"kind": "train", "step": step, "loss": 1.0 / step})
        if step % 2 == 0:
            run.log({"kind": "eval", "step": step, "val_loss": 2.0 / step})
    run.truncate_history(4)
    assert [r["step"] for r in run.history("train")] == [1, 2, 3, 4]
    lines = run.metrics_csv_path.read_text().splitlines()
    assert lines[0] == "step,val_loss" and len(lines) == 3


def test_torn_last_history_line_is_ignored(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1}\n{"step": 2')
    assert read_jsonl(path) == [{"step": 1}]


def test_atomic_write_leaves_no_temp_file(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
