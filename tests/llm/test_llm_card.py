"""A LoRA run's final folder is a complete Hub repository: a filled model card whose metadata huggingface_hub
reads back (base, library, task, tags, the eval metrics with their split), the adapter, the tokenizer, and an
adapter_config.json whose base plain PEFT resolves. `--push-to-hub` uploads it, or refuses before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from dlkit.core.run import Run, atomic_write_json


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, capitals_file) -> Path:
    from dlkit.cli import main

    out = tmp_path_factory.mktemp("card") / "lora"
    assert (
        main(
            [
                "-q",
                "llm",
                "train",
                "--method",
                "lora",
                "--data",
                str(capitals_file),
                "--max-steps",
                "2",
                "--batch-size",
                "8",
                "--val-size",
                "8",
                "--test-size",
                "8",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    return out


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_final_folder_is_a_hub_repository_with_a_filled_card(lora_run, tmp_path):
    from huggingface_hub import ModelCard

    final = lora_run / "checkpoints" / "final"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in final.iterdir()
    }
    text = (final / "README.md").read_text(encoding="utf-8")
    assert "More Information Needed" not in text and str(tmp_path.parent) not in text and ".cache" not in text
    card = ModelCard.load(final / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"dlkit", "llm", "lora", "peft"} <= set(meta["tags"])
    assert "base_model" not in meta and "datasets" not in meta  # a builtin base and a local file: named in the text
    metrics = json.loads((lora_run / "metrics.json").read_text())
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {
        ("validation", "loss"): pytest.approx(metrics["val_loss"]),
        ("validation", "ppl"): pytest.approx(metrics["val_ppl"]),
    }
    assert {r.dataset_name for r in card.data.eval_results} == {"capitals.jsonl"}
    # the text: the base, the data, the split sizes, the command and the effective config
    assert "`builtin:tiny-llama`" in text and "- **Splits:** train 144, validation 8, test 8" in text
    assert "dlkit -q llm train --method lora --data capitals.jsonl --max-steps 2" in text
    assert '"rank": 8' in text and "AutoPeftModelForCausalLM" in text
    # round trip: what huggingface_hub reads is what it writes back
    card.save(tmp_path / "README.md")
    assert front_matter((tmp_path / "README.md").read_text()) == front_matter(text) == meta


def test_adapter_config_names_a_base_plain_peft_loads(lora_run):
    from peft import AutoPeftModelForCausalLM

    from dlkit.builtin import BUILTINS
    from dlkit.llm.models import load_trained

    final = lora_run / "checkpoints" / "final"
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(BUILTINS["tiny-llama"].load())
    model, tokenizer, _ = load_trained(lora_run)
    ids = tokenizer(["What is the capital of Iran?"], return_tensors="pt").input_ids
    plain = AutoPeftModelForCausalLM.from_pretrained(str(final)).eval()  # no base passed: PEFT reads it
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


def test_export_writes_its_own_card(cli, lora_run, tmp_path):
    from huggingface_hub import ModelCard

    assert cli("llm", "export", "--run", lora_run, "--out", tmp_path / "merged", "--merge").exit_code == 0
    card = ModelCard.load(tmp_path / "merged" / "README.md")
    assert card.data.library_name == "transformers" and "merged model" in card.text
    assert "AutoModelForCausalLM.from_pretrained" in card.text and "More Information Needed" not in card.text


def test_a_hub_base_and_dataset_go_into_the_metadata(tmp_path):
    from huggingface_hub import ModelCard

    from dlkit.core.config import META_KEY
    from dlkit.core.modelcard import write_card
    from dlkit.llm.models import card_info

    run = Run(tmp_path / "run", "llm")
    atomic_write_json(
        run.config_path,
        {
            "model": "google/gemma-2-2b",
            "data": "universitytehran/SlimOrca",
            "method": "lora",
            "output_dir": str(run.dir),
            META_KEY: {
                "group": "llm",
                "command": f"dlkit llm train --output-dir {run.dir}",
                "versions": {"dlkit": "0.1.0"},
            },
        },
    )
    atomic_write_json(
        run.dir / "splits.json", {"rule": "seeded", "train": ["a", "b"], "validation": ["c"], "test": ["d", "e"]}
    )
    run.write_metrics(
        {
            "status": "finished",
            "steps": 10,
            "val_loss": 1.5,
            "val_examples": 1,
            "test_exact_match": 0.5,
            "test_examples": 2,
            "train_loss": 1.0,
        }
    )
    write_card(run.model_dir, run, card_info({"base": "google/gemma-2-2b", "method": "lora", "peft": True}))
    card = ModelCard.load(run.model_dir / "README.md")
    assert card.data.base_model == "google/gemma-2-2b" and card.data.datasets == ["universitytehran/SlimOrca"]
    assert card.data.to_dict()["base_model_relation"] == "adapter"
    assert {(r.dataset_split, r.metric_type, r.metric_value, r.dataset_type) for r in card.data.eval_results} == {
        ("validation", "loss", 1.5, "universitytehran/SlimOrca"),
        ("test", "exact_match", 0.5, "universitytehran/SlimOrca"),
    }
    assert "| test | 2 | exact_match | 0.5 |" in card.text and str(tmp_path) not in card.text


def test_push_to_hub_offline_is_refused_before_training(cli, capitals_file, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "llm", "train", "--data", capitals_file, "--max-steps", "1", "--output-dir", out, "--push-to-hub", "me/my-lora"
    )
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--push-to-hub me/my-lora" in result.stderr and "cannot be reached" in result.stderr
    assert not (out / "history.jsonl").exists() and not (out / "checkpoints").exists()
    bad = cli(
        "llm",
        "train",
        "--data",
        capitals_file,
        "--max-steps",
        "1",
        "--output-dir",
        tmp_path / "b",
        "--push-to-hub",
        "my-lora",
    )
    assert bad.exit_code == 2 and "NAMESPACE/NAME" in bad.stderr


def test_export_push_offline_is_refused_before_writing(cli, lora_run, tmp_path):
    result = cli("llm", "export", "--run", lora_run, "--out", tmp_path / "exported", "--push-to-hub", "me/my-lora")
    assert result.exit_code == 2 and "cannot be reached" in result.stderr
    assert not (tmp_path / "exported").exists()


def test_export_push_uploads_the_folder_with_its_card(cli, lora_run, tmp_path, monkeypatch):
    """The Hub replaced by a recorder (the suite is offline): what would be uploaded, and where."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    uploads = []

    def repo_info(self, repo_id, **kwargs):  # the Hub answers: no such repository yet
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(error, "404 Client Error: Repository Not Found")
        raise error

    def upload_folder(self, folder_path, repo_id, **kwargs):
        uploads.append((repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}))

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    result = cli(
        "--json", "llm", "export", "--run", lora_run, "--out", tmp_path / "exported", "--push-to-hub", "me/my-lora"
    )
    assert result.exit_code == 0, result.stderr
    ((repo, files),) = uploads
    assert repo == "me/my-lora" and json.loads(result.stdout)["hub"].endswith("me/my-lora")
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(files)
    assert b"library_name: peft" in files["README.md"]
