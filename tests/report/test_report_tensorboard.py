"""--report-to tensorboard: the history's scalars also go to TensorBoard event files in the run folder."""

import pytest
from report_helpers import regression_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlkit.core.run import Run


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_event_file_holds_the_logged_losses(tmp_path):
    run = Run.open(regression_run(tmp_path, "alpha", "tb", 1e-2, report_to="tensorboard"))
    assert list((run.dir / "tensorboard").glob("events.out.tfevents.*"))
    logged = scalars(run.dir / "tensorboard")
    train, evals = run.history("train"), run.history("eval")
    assert len(train) == 6 and len(evals) == 2
    assert logged["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
    assert logged["eval/val_loss"] == [(r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in evals]
    assert [step for step, _ in logged["train/lr"]] == [r["step"] for r in train]


def _has_hparams(events: EventAccumulator) -> bool:
    try:
        events.PluginTagToContent("hparams")
    except KeyError:  # this event file holds scalars only
        return False
    return True


def test_the_effective_config_is_logged_as_hparams(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = Run.open(regression_run(tmp_path, "alpha", "tb", 1e-2, report_to="tensorboard"))
    found = {}
    for folder in (run.dir / "tensorboard").rglob("events.out.tfevents.*"):
        events = EventAccumulator(str(folder.parent))
        events.Reload()
        if not _has_hparams(events):
            continue
        for tag, content in events.PluginTagToContent("hparams").items():
            if tag == "_hparams_/session_start_info":
                info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
                found = {k: v.ListFields()[0][1] for k, v in info.hparams.items()}
    assert found["lr"] == pytest.approx(1e-2) and found["report_to"] == "tensorboard"
    assert found["max_steps"] == run.read_config()["max_steps"]


def test_no_tracker_by_default(tmp_path):
    run = regression_run(tmp_path, "alpha", "plain", 1e-2)
    assert not (run / "tensorboard").exists()
