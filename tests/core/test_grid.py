"""--grid KEY=V1,V2 over any train flag: typed values, every combination in order, one named run folder per point,
the precedence of a shared config file, fixed flags and the grid; each bad grid is one line (exit 2)."""

from __future__ import annotations

import json

import pytest

from dlkit.core.config import TrainConfig
from dlkit.core.errors import ConfigError
from dlkit.core.grid import grid_points, parse_grid, point_configs


def test_values_take_the_flags_types_and_every_combination_is_a_run():
    axes = parse_grid(
        ["lr=1e-4,3e-4", "--batch-size=8,16", "scheduler=cosine", "max-steps=none,5", "gradient_checkpointing=true"],
        TrainConfig,
    )
    assert axes["lr"] == [(1e-4, "1e-4"), (3e-4, "3e-4")]
    assert axes["batch_size"] == [(8, "8"), (16, "16")] and axes["max_steps"] == [(None, "none"), (5, "5")]
    assert axes["scheduler"] == [("cosine", "cosine")] and axes["gradient_checkpointing"] == [(True, "true")]
    points = grid_points(axes)
    assert len(points) == 8
    assert [p.name for p in points[:3]] == [
        "lr=1e-4_batch_size=8_scheduler=cosine_max_steps=none_gradient_checkpointing=true",
        "lr=1e-4_batch_size=8_scheduler=cosine_max_steps=5_gradient_checkpointing=true",
        "lr=1e-4_batch_size=16_scheduler=cosine_max_steps=none_gradient_checkpointing=true",
    ]
    assert points[-1].values == {
        "lr": 3e-4,
        "batch_size": 16,
        "scheduler": "cosine",
        "max_steps": 5,
        "gradient_checkpointing": True,
    }


@pytest.mark.parametrize(
    "spec,message",
    [
        ("lr", "expected KEY=V1,V2"),
        ("lrr=1e-3", "lrr is not a train flag; did you mean 'lr'?"),
        ("output-dir=a,b", "output-dir is not a train flag"),
        ("lr=fast", "'fast' is not a number"),
        ("epochs=1.5", "'1.5' is not an integer"),
        ("scheduler=warm", "--grid scheduler: 'warm' is not one of constant, linear, cosine, step"),
        ("lr=1e-3,0.001", "a value is given twice"),
    ],
)
def test_a_bad_grid_is_one_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        parse_grid([spec], TrainConfig)
    with pytest.raises(ConfigError, match="gridded twice"):
        parse_grid(["lr=1e-3", "lr=1e-2"], TrainConfig)


def test_a_point_overrides_fixed_flags_which_override_the_shared_file(tmp_path):
    shared = tmp_path / "shared.yaml"
    shared.write_text("lr: 0.5\nepochs: 7\nbatch_size: 4\n")
    points = grid_points(parse_grid(["lr=1e-3,1e-2"], TrainConfig))
    configs = point_configs(TrainConfig, points, tmp_path / "sweep", {"epochs": 2}, lambda _: shared)
    assert [(c.lr, c.epochs, c.batch_size) for c in configs] == [(1e-3, 2, 4), (1e-2, 2, 4)]
    assert [c.output_dir for c in configs] == [str(tmp_path / "sweep" / "lr=1e-3"), str(tmp_path / "sweep" / "lr=1e-2")]
    with pytest.raises(ConfigError, match="--lr must be > 0"):  # every point is validated before any run trains
        point_configs(TrainConfig, grid_points(parse_grid(["lr=1e-3,-1"], TrainConfig)), tmp_path, {}, lambda _: None)


@pytest.mark.slow
def test_adapter_sweep_trains_each_point_and_compares_them(cli, tmp_path):
    shared = tmp_path / "tiny.yaml"
    shared.write_text("max_steps: 4\nbatch_size: 16\nmax_train_samples: 64\nmax_eval_samples: 32\n")
    result = cli(
        "--json",
        "adapter",
        "sweep",
        "--grid",
        "bottleneck=4,8",
        "--train-config",
        shared,
        "--output-dir",
        tmp_path / "sweep",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == ["bottleneck=4", "bottleneck=8"]
    for row, width in zip(rows, (4, 8), strict=True):
        config = json.loads((tmp_path / "sweep" / row["run"] / "config.json").read_text())
        assert config["bottleneck"] == width and config["max_steps"] == 4  # the grid's value, the file's settings
        assert row["steps"] == 4 and row["split"] == "test" and 0 <= row["test_accuracy"] <= 1
    assert rows[1]["trainable_params"] > rows[0]["trainable_params"]
    table = (tmp_path / "sweep" / "comparison.md").read_text()
    assert table.startswith("| run | bottleneck | train_seconds |") and "| bottleneck=8 | 8 |" in table
    assert (tmp_path / "sweep" / "comparison.png").stat().st_size > 1000
    listed = json.loads(cli("compare", tmp_path / "sweep", "--format", "json").stdout)
    assert [r["run"].rsplit("/", 1)[-1] for r in listed] == ["bottleneck=4", "bottleneck=8"]
