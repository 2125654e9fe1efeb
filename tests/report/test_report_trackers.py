"""--report-to wandb / mlflow (each alone and together): the scalars of history.jsonl, the effective config and
the final metrics reach each tracker's own store, read back with the tracker's own reader (W&B's offline
transaction log, MLflow's tracking client on a local file store). A missing tracker package is one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from report_helpers import regression_run

from dlkit.core.run import Run


def logged_history(run: Run) -> dict[str, list[tuple[int, float]]]:
    """KIND/KEY -> [(step, value)] of every number history.jsonl holds: what every tracker must show."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in run.history():
        for key, value in record.items():
            if key not in ("kind", "step") and isinstance(value, int | float) and not isinstance(value, bool):
                out.setdefault(f"{record['kind']}/{key}", []).append((record["step"], value))
    return out


def wandb_records(run_dir: Path) -> list:
    """The protobuf records of W&B's offline run file (a LevelDB-style log: 7-byte header, then 32 KiB
    blocks of chunks, each with a crc32, a length and a type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    data, block = files[0].read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunks, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        chunks = chunk if kind in (1, 2) else chunks + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def finished_wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records once the run's exit record is written: W&B's service writes the file after `finish()`
    returns (the process's exit waits for it; a test reading in the same process polls)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def wandb_run(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, object]]:
    """(KEY -> [(step, value)] of the logged history, the run's config)."""
    history: dict[str, list[tuple[int, float]]] = {}
    config: dict[str, object] = {}
    for record in finished_wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, []).append((items["_step"], value))
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key: json.loads(item.value_json) for item in updates})
    return history, config


def assert_same_history(logged: dict[str, list[tuple[int, float]]], expected: dict[str, list[tuple[int, float]]]):
    for key, points in expected.items():
        assert [s for s, _ in logged[key]] == [s for s, _ in points], key
        assert [v for _, v in logged[key]] == pytest.approx([v for _, v in points], rel=1e-6), key


@pytest.fixture
def wandb_offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


@pytest.fixture
def mlflow_store(monkeypatch, tmp_path):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{store}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores behind this switch
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return store


def mlflow_run(group: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"dlkit-{group}")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_wandb_offline_holds_the_history_the_config_and_the_final_metrics(tmp_path, wandb_offline):
    run = Run.open(regression_run(tmp_path, "alpha", "wb", 1e-2, report_to="wandb"))
    logged, config = wandb_run(run.dir)
    expected = logged_history(run)
    assert len(expected["train/loss"]) == 6 and len(expected["eval/val_loss"]) == 2
    assert_same_history(logged, expected)
    assert config["lr"] == pytest.approx(1e-2) and config["report_to"] == "wandb" and config["max_steps"] == 6
    metrics = run.read_metrics()
    assert logged["final/val_loss"] == [(6, pytest.approx(metrics["val_loss"], rel=1e-6))]
    assert logged["final/trainable_params"] == [(6, metrics["trainable_params"])]
    from dlkit.report.generic import run_files

    assert not [p for p in run_files(run.dir) if "wandb" in p.parts]  # W&B's own files are not report material


def test_mlflow_file_store_holds_the_history_the_config_and_the_final_metrics(tmp_path, mlflow_store):
    run = Run.open(regression_run(tmp_path, "alpha", "ml", 1e-2, report_to="mlflow"))
    client, found = mlflow_run("alpha")
    assert found.info.run_name == "ml" and found.info.status == "FINISHED"
    expected = logged_history(run)
    logged = {
        key: [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, key)]
        for key in [*expected, "final/val_loss"]
    }
    assert_same_history(logged, expected)
    assert float(found.data.params["lr"]) == pytest.approx(1e-2) and found.data.params["max_steps"] == "6"
    assert logged["final/val_loss"] == [(6, pytest.approx(run.read_metrics()["val_loss"], rel=1e-6))]


def test_several_trackers_at_once(tmp_path, wandb_offline, mlflow_store):
    run = Run.open(regression_run(tmp_path, "beta", "both", 1e-2, report_to="tensorboard, wandb,mlflow"))
    expected = logged_history(run)
    assert_same_history(wandb_run(run.dir)[0], expected)
    client, found = mlflow_run("beta")
    assert [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "train/loss")] == [
        (s, pytest.approx(v, rel=1e-6)) for s, v in expected["train/loss"]
    ]
    assert list((run.dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_a_missing_tracker_package_is_one_line_naming_it(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = cli("charrnn", "train", "--report-to", "tensorboard,mlflow", "--output-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --report-to mlflow: the package is not installed; install it with: pip install mlflow"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["wandbb", "none,wandb"])
def test_an_unknown_tracker_is_refused(cli, tmp_path, value):
    result = cli("charrnn", "train", "--report-to", value, "--output-dir", tmp_path / "run")
    assert result.exit_code == 2 and "--report-to" in result.stderr and "wandb, mlflow" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
