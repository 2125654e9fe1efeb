"""charrnn through the engine: token-weighted accumulation and the divergence stop."""

import json

TINY = [
    "--arch",
    "gru",
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--block-size",
    "16",
    "--batch-size",
    "8",
    "--sample-chars",
    "20",
]


def test_items_are_predicted_characters_and_batch_8_equals_4x2(big_batch_vs_accumulation):
    from dlkit.charrnn.config import CharRNNConfig
    from dlkit.charrnn.task import CharRNNTask
    from dlkit.core.config import load_config

    task = CharRNNTask(
        load_config(
            CharRNNConfig,
            None,
            {"data": "builtin:text", "arch": "gru", "hidden_size": 16, "num_layers": 1, "block_size": 16},
        )
    )
    assert big_batch_vs_accumulation(task, [0, 5, 9, 40, 41, 77, 100, 123]) == 8 * 16


def max_abs_weight(checkpoint):
    from safetensors.torch import load_file

    return max(t.abs().max().item() for t in load_file(str(checkpoint / "model.safetensors")).values())


def test_a_huge_learning_rate_stops_as_diverged(cli, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "charrnn",
        "train",
        "--data",
        "builtin:text",
        "--output-dir",
        out,
        *TINY,
        "--max-steps",
        "40",
        "--lr",
        "1e6",
        "--save-every",
        "1",
        "--log-every",
        "5",
    )
    assert result.exit_code == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    # the first update already took the weights to |w| ~ 1e6: the only checkpoint holds them, none is good
    assert message.startswith("error: diverged at step 2") and message.endswith(
        "training stopped and no good checkpoint: the weights went bad at step 1; lower --lr, or raise "
        "--divergence-factor (0 turns the check off)"
    ), message
    assert max_abs_weight(out / "checkpoints/step_0000001") > 1e5
    metrics = json.loads((out / "metrics.json").read_text())
    diverged = metrics["diverged"]
    assert metrics["status"] == "diverged" and diverged["smoothed_loss"] > 10 * diverged["best_smoothed_loss"]
    assert not (out / "checkpoints/final").exists()
    resumed = cli(
        "charrnn",
        "train",
        "--data",
        "builtin:text",
        "--output-dir",
        out,
        *TINY,
        "--max-steps",
        "40",
        "--lr",
        "1e6",
        "--save-every",
        "1",
        "--log-every",
        "5",
        "--resume",
    )
    assert (
        resumed.exit_code == 2
        and "skipping step_0000001: its weights gave a non-finite or diverged loss" in resumed.stderr
        and "no readable checkpoint with good weights" in resumed.stderr
    ), resumed.stderr
