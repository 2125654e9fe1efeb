"""charrnn through the engine: token-weighted accumulation and the divergence stop."""

import json

TINY = ["--arch", "gru", "--hidden-size", "16", "--num-layers", "1", "--block-size", "16", "--batch-size", "8",
        "--sample-chars", "20"]


def test_items_are_predicted_characters_and_batch_8_equals_4x2(big_batch_vs_accumulation):
    from dlkit.charrnn.config import CharRNNConfig
    from dlkit.charrnn.task import CharRNNTask
    from dlkit.core.config import load_config

    task = CharRNNTask(load_config(CharRNNConfig, None, {"data": "builtin:text", "arch": "gru", "hidden_size": 16,
                                                         "num_layers": 1, "block_size": 16}))
    assert big_batch_vs_accumulation(task, [0, 5, 9, 40, 41, 77, 100, 123]) == 8 * 16


def test_a_huge_learning_rate_stops_as_diverged(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("charrnn", "train", "--data", "builtin:text", "--output-dir", out, *TINY, "--max-steps", "40",
                 "--lr", "1e6", "--save-every", "1", "--log-every", "5")
    assert result.exit_code == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: diverged at step") and "last good checkpoint" in message, message
    metrics = json.loads((out / "metrics.json").read_text())
    diverged = metrics["diverged"]
    assert metrics["status"] == "diverged" and diverged["smoothed_loss"] > 10 * diverged["best_smoothed_loss"]
    assert (out / "checkpoints").is_dir() and not (out / "checkpoints/final").exists()
