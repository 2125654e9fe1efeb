"""`llm eval` scores conversations the run held out, and the train split only when asked by name."""

from __future__ import annotations

import json

from llm_helpers import train_run


def test_eval_scores_held_out_conversations_and_train_only_when_asked(cli, tmp_path, capitals_file):
    _, run = train_run(tmp_path / "r", "lora", capitals_file, steps=1)
    ids = json.loads((run / "splits.json").read_text())
    assert (len(ids["validation"]), len(ids["test"])) == (8, 24) and len(ids["train"]) > 100
    assert not set(ids["train"]) & (set(ids["validation"]) | set(ids["test"]))
    recorded = json.loads((run / "config.json").read_text())["_dlkit"]["splits"]
    assert recorded["sizes"] == {"train": len(ids["train"]), "validation": 8, "test": 24}

    from dlkit.core.run import Run
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.data import build_splits
    from dlkit.llm.models import load_tokenizer, resolve_model

    cfg = Run.open(run, "llm").config_as(LlmConfig)
    splits = build_splits(cfg, load_tokenizer(resolve_model(cfg.model)))
    assert splits.ids_of(splits.test) == ids["test"]  # eval finds exactly the recorded test conversations

    result = json.loads(cli("llm", "eval", "--run", run, "--max-new-tokens", "2", "--limit", "3", "--json").stdout)
    assert result["split"] == "test" and result["split_size"] == 3 and "val_loss" in result
    train = json.loads(
        cli("llm", "eval", "--run", run, "--max-new-tokens", "2", "--limit", "3", "--split", "train", "--json").stdout
    )
    assert train["split"] == "train" and {"train_loss", "train_exact_match"} <= set(train)
    assert not any(k.startswith(("test_", "val_")) for k in train)
    other = json.loads(
        cli(
            "llm", "eval", "--run", run, "--data", capitals_file, "--max-new-tokens", "2", "--limit", "3", "--json"
        ).stdout
    )
    assert other["split"] == "all" and "all_exact_match" in other  # a file without a split in its name: all of it
