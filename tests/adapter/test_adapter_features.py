"""--method head: the frozen encoder runs once, and the head trained on its cached output gives the losses of
running the encoder on every batch (the head's dropout on, the frozen encoder's off on both paths)."""

from __future__ import annotations


def test_cached_encoder_gives_the_uncached_losses(cached_and_uncached):
    runs = cached_and_uncached(
        "adapter",
        "train",
        "--method",
        "head",
        "--max-train-samples",
        "48",
        "--max-eval-samples",
        "16",
        "--batch-size",
        "8",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--save-every",
        "100000",
        "--warmup",
        "0",
        steps=6,
    )
    assert "the frozen encoder runs once: features of 48 + 16 examples" in runs["cached"].stderr
    assert runs["cached"].metrics["tokens_per_second"] > 0  # the token counts travel with the features
