"""llm through the engine on variable-length conversations: items are labelled tokens, and batch 8 equals
batch 4 x grad-accum 2 step after step."""

import json

import pytest
from llm_helpers import train_run, write_jsonl

WORDS = "red green blue black white yellow orange purple brown grey pink gold silver".split()


@pytest.fixture(scope="module")
def ragged_file(tmp_path_factory):
    """Answers of 1 to 13 words: micro-batches differ several-fold in labelled tokens."""
    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"List {1 + i % 13} colours."},
                {"from": "gpt", "value": " ".join(WORDS[: 1 + (i * 5) % 13])},
            ]
        }
        for i in range(64)
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "ragged.jsonl", rows)


def test_items_are_labelled_tokens_and_batch_8_equals_4x2(ragged_file, tmp_path, big_batch_vs_accumulation):
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import IGNORE, LlmTask

    task = LlmTask(load_config(LlmConfig, None, {"data": str(ragged_file), "method": "full", "dropout": 0.0}))
    indices = list(range(8))
    items = big_batch_vs_accumulation(task, indices)
    train_set, _ = task.datasets()
    labelled = [sum(1 for label in train_set[i]["labels"][1:] if label != IGNORE) for i in indices]
    assert len(set(labelled)) > 2 and items == sum(labelled)


def test_batch_8_and_4_times_2_train_alike(ragged_file, tmp_path):
    common = {"steps": 3, "lr": 1e-3, "dropout": 0.0, "log_every": 1, "max_grad_norm": 0.0}
    _, big = train_run(tmp_path / "big", "lora", ragged_file, batch_size=8, **common)
    _, accum = train_run(tmp_path / "accum", "lora", ragged_file, batch_size=4, grad_accum=2, **common)

    def losses(run):
        return [
            json.loads(line)["loss"] for line in (run / "history.jsonl").read_text().splitlines() if '"train"' in line
        ]

    assert len(losses(big)) == 3
    assert losses(accum) == pytest.approx(losses(big), rel=1e-5)
