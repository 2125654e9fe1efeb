"""It learns: on builtin:markov the best possible validation loss is the chain's entropy rate H.

A model that learned the order-2 transitions gets within 0.05 nats of H after a few seconds; none can go
below it beyond the noise of the 20k-character validation split (a model that memorised the training
text would score worse, not better, on the held-out end). Block size 32 costs ~0.01 nats over H: the
first character of each block is predicted from one character of context instead of two.
"""

import pytest

from dlkit.charrnn.config import CharRNNConfig
from dlkit.charrnn.task import train
from dlkit.core.config import load_config

SETTINGS = {
    "lstm": {"hidden_size": 64, "num_layers": 1, "lr": 3e-2},
    "transformer": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "lr": 2e-2},
}


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_validation_loss_reaches_the_entropy_rate(tmp_path, arch):
    cfg = load_config(
        CharRNNConfig,
        None,
        {
            "data": "builtin:markov",
            "arch": arch,
            "output_dir": str(tmp_path / arch),
            "block_size": 32,
            "batch_size": 64,
            "max_steps": 400,
            "eval_every": 400,
            "save_every": 400,
            "max_val_blocks": 0,
            "sample_chars": 50,
            **SETTINGS[arch],
        },
    )
    metrics = train(cfg)
    entropy = metrics["entropy_rate"]
    assert entropy - 0.02 < metrics["val_loss"] < entropy + 0.05, (metrics["val_loss"], entropy)
    assert metrics["val_bpc"] == pytest.approx(metrics["val_loss"] / 0.6931471805599453)
    assert metrics["optimal_bpc"] == pytest.approx(entropy / 0.6931471805599453)
    sample = (tmp_path / arch / "samples" / "step_0000400.txt").read_text()
    assert len(sample) == 51 + 1 and set(sample) <= set(" aeilnorst\n")
    assert (tmp_path / arch / "plots" / "val_bpc.png").stat().st_size > 0
