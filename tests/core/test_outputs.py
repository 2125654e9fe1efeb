"""The output policy every command writes through (dlkit.core.outputs): new or dlkit-made folders only, a
manifest of dlkit's own files recorded before each write, --overwrite removing only those, legacy run folders
kept usable."""

import json

import pytest

from dlkit.core.errors import ConfigError, RunError
from dlkit.core.outputs import (
    MARKER,
    atomic_write_json,
    atomic_write_text,
    check_output,
    check_output_file,
    claim,
    read_manifest,
    record,
    written_by_dlkit,
)


def user_folder(path):
    """A user's folder: notes, a stats.json and a plot, as a user keeps them."""
    (path / "plots").mkdir(parents=True)
    (path / "notes.txt").write_text("keep")
    (path / "stats.json").write_text('{"mine": 1}')
    (path / "plots" / "samples.png").write_bytes(b"png")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_user_folder_is_refused_with_or_without_overwrite_and_left_as_it_was(tmp_path):
    before = user_folder(tmp_path / "u")
    for overwrite in (False, True):
        with pytest.raises(
            RunError,
            match=r"u holds files dlkit did not write \(notes.txt, plots, "
            r"stats.json\)",
        ):
            claim(tmp_path / "u", "llm", "prepare", overwrite=overwrite)
        with pytest.raises(RunError, match="did not write"):
            check_output(tmp_path / "u", "llm", "prepare", overwrite=overwrite)
    assert snapshot(tmp_path / "u") == before


def test_overwrite_removes_only_what_the_manifest_lists(tmp_path):
    out = tmp_path / "out"
    held = claim(out, "llm", "prepare", overwrite=False)
    atomic_write_json(out / "stats.json", {"n": 1})
    atomic_write_text(out / "plots" / "lengths.png", "png")
    held.release()
    assert read_manifest(out).written == {"stats.json", "plots/lengths.png"}
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        claim(out, "llm", "prepare", overwrite=False)
    with pytest.raises(RunError, match=r"was written by `dlkit llm prepare`, not by `dlkit clip prepare`"):
        claim(out, "clip", "prepare", overwrite=True)
    claim(out, "llm", "prepare", overwrite=True).release()
    assert sorted(p.name for p in out.iterdir()) == sorted([".dlkit.lock", MARKER])  # plots/ went with its only file
    # a file the user adds to a dlkit folder makes it foreign: refused, and kept
    atomic_write_json(out / "stats.json", {"n": 2})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"holds files dlkit did not write \(notes.txt\)"):
        claim(out, "llm", "prepare", overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "stats.json").exists()


def test_a_file_dlkit_did_not_write_is_never_replaced_inside_a_dlkit_folder(tmp_path):
    out = tmp_path / "run"
    claim(out, "llm", "train", overwrite=False).release()
    (out / "eval.json").write_text("the user's")  # put there by hand, at the name an eval would write
    with pytest.raises(RunError, match="eval.json was not written by dlkit, so it is not replaced"):
        atomic_write_json(out / "eval.json", {"accuracy": 1})
    assert (out / "eval.json").read_text() == "the user's"


def test_folders_written_whole_by_a_library_and_nested_outputs(tmp_path):
    out = tmp_path / "run"
    claim(out, "llm", "train", overwrite=False).release()
    record(out / "checkpoints", folder=True)
    (out / "checkpoints" / "step_1").mkdir(parents=True)
    (out / "checkpoints" / "step_1" / "model.safetensors").write_bytes(b"w")
    export = claim(out / "export", "llm", "export", overwrite=False)  # an export inside the run: its own marker
    record(out / "export", folder=True)
    (out / "export" / "adapter_model.safetensors").write_bytes(b"w")
    export.release()
    assert read_manifest(out / "export").written == {"./"}
    claim(out, "llm", "train", overwrite=True).release()
    assert sorted(p.name for p in out.iterdir()) == sorted([".dlkit.lock", MARKER])


def test_killed_writer_leaves_only_recorded_files(tmp_path):
    """Recorded before written: a temp file of a recorded name counts as dlkit's."""
    out = tmp_path / "out"
    claim(out, "vit", "prepare", overwrite=False).release()
    record(out / "stats.json")
    (out / ".stats.json.999999.tmp").write_text("half")  # as a killed atomic write leaves it
    check_output(out, "vit", "prepare", overwrite=True)
    claim(out, "vit", "prepare", overwrite=True).release()
    assert not (out / ".stats.json.999999.tmp").exists()


def test_legacy_run_folder_is_replaced_only_when_every_entry_is_a_run_layout_name(tmp_path):
    run = tmp_path / "old"
    (run / "plots").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"lr": 1, "_dlkit": {"group": "llm"}}))
    (run / "metrics.json").write_text("{}")
    (run / "plots" / "loss.png").write_bytes(b"png")
    atomic_write_json(run / "eval.json", {"a": 1})  # eval into a legacy run: a layout name, allowed
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"holds files dlkit did not write \(notes.txt\)"):
        claim(run, "llm", "train", overwrite=True, legacy_ok=True)
    with pytest.raises(RunError, match="notes.txt was not written by dlkit"):
        atomic_write_text(run / "notes.txt", "replaced")
    (run / "notes.txt").unlink()
    with pytest.raises(RunError, match="is a llm run folder; `dlkit llm prepare` does not replace it"):
        claim(run, "llm", "prepare", overwrite=True)
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        claim(run, "llm", "train", overwrite=False, legacy_ok=True)
    claim(run, "llm", "train", overwrite=True, legacy_ok=True).release()
    assert sorted(p.name for p in run.iterdir()) == sorted([".dlkit.lock", MARKER])


def test_an_output_that_is_or_holds_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.jsonl").write_text("{}\n")
    for out in (data, tmp_path):
        with pytest.raises(ConfigError, match=r"is or holds the input --data"):
            check_output(out, "llm", "prepare", overwrite=True, inputs={"--data": [str(data / "rows.jsonl")]})
    check_output(tmp_path / "elsewhere", "llm", "prepare", overwrite=False, inputs={"--data": [str(data)]})


def test_output_files_carry_a_mark_and_only_marked_ones_are_replaced(tmp_path):
    mine = tmp_path / "report.html"
    mine.write_text("<html>my notes</html>")
    for overwrite in (False, True):
        with pytest.raises(RunError, match="was not written by dlkit, so it is not replaced"):
            check_output_file(mine, "-o", overwrite)
    ours = tmp_path / "ours.html"
    ours.write_text("<!-- written by dlkit -->\n<html></html>")
    assert written_by_dlkit(ours)
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        check_output_file(ours, "-o", False)
    check_output_file(ours, "-o", True)
    with pytest.raises(RunError, match="is a folder"):
        check_output_file(tmp_path, "-o", True)
