"""caption through the engine: items are target tokens, and a batch of 8 equals 2 micro-batches of 4."""

import pytest


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_items_are_target_tokens_and_batch_8_equals_4x2(tmp_path, arch, big_batch_vs_accumulation):
    from dlkit.caption.config import CaptionConfig
    from dlkit.caption.data import PAD_ID
    from dlkit.caption.task import CaptionTask, prepare_splits
    from dlkit.core.config import load_config
    from dlkit.core.run import Run

    cfg = load_config(
        CaptionConfig,
        None,
        {
            "data": "builtin:shapes",
            "arch": arch,
            "output_dir": str(tmp_path / "r"),
            "embed_dim": 32,
            "hidden_dim": 32,
            "attention_dim": 16,
        },
    )
    task = CaptionTask(cfg, Run.create("caption", cfg, arch), prepare_splits(cfg))
    indices = [0, 3, 7, 11, 12, 20, 31, 40]
    items = big_batch_vs_accumulation(task, indices)
    train_set, _ = task.datasets()
    lengths = [int((train_set[i]["tokens"][1:] != PAD_ID).sum()) for i in indices]
    assert len(set(lengths)) > 1  # captions of different lengths: equal weighting would be wrong
    assert items == sum(lengths)
