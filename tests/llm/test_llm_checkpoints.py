"""Checkpoints and final folders hold what trained (an adapter, the unfrozen layers), and a checkpoint saved in
bf16 trains in fp32: small updates are not rounded away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from llm_helpers import train_run


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_lora_checkpoints_hold_the_adapter_and_its_optimizer_state(tmp_path, capitals_file):
    metrics, run = train_run(tmp_path / "r", "lora", capitals_file, steps=4, save_every=2)
    adapter_bytes = 4 * metrics["trainable_params"]  # fp32
    optimizer_bytes = 2 * adapter_bytes  # AdamW's two moments
    whole_model_bytes = 4 * metrics["total_params"]
    for ckpt in sorted((run / "checkpoints").glob("step_*")):
        assert folder_bytes(ckpt) <= 2 * (adapter_bytes + optimizer_bytes) < whole_model_bytes, ckpt.name
        state = json.loads((ckpt / "trainer_state.json").read_text())
        assert state["model"]["source"] == "builtin:tiny-llama" and state["model"]["frozen_fingerprint"]
    final = run / "checkpoints" / "final"
    assert (final / "adapter_model.safetensors").is_file() and not (final / "model.safetensors").exists()


def test_changed_params_counts_the_elements_that_moved(tmp_path):
    """Three elements of a 16x8 weight moved, read back from its checkpoint or from a copy: 3, not 128."""
    from safetensors.torch import save_file

    from dlkit.llm.task import ParamSnapshot

    layer = torch.nn.Linear(8, 16)
    layer.bias.requires_grad_(False)
    save_file({"weight": layer.weight.detach().clone()}, str(tmp_path / "base.safetensors"))
    for files in ({"weight": tmp_path / "base.safetensors"}, {}):
        snapshot = ParamSnapshot(list(layer.named_parameters()), files)
        with torch.no_grad():
            layer.weight[0, :3] += 1.0
        report = snapshot.report(layer)
        assert report["changed_params"] == 3 and report["changed_param_names"] == ["weight"]
        assert report["frozen_changed"] == []
        with torch.no_grad():
            layer.weight[0, :3] -= 1.0


def test_partial_final_folder_holds_the_unfrozen_layers_and_exports_merged(cli, tmp_path, capitals_file):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from dlkit.llm.models import load_trained

    metrics, run = train_run(tmp_path / "r", "partial", capitals_file, steps=3, lr=1e-3, unfreeze="first1")
    saved = load_file(str(run / "checkpoints" / "final" / "trained.safetensors"))
    assert saved and all(".layers.0." in n for n in saved)  # (the rotary frequencies are recomputed, not saved)
    assert sum(t.numel() for t in saved.values()) == metrics["trainable_params"] < metrics["total_params"] / 4
    model, tokenizer, _ = load_trained(run)
    assert cli("llm", "export", "--run", run, "--merge", "--out", tmp_path / "merged").exit_code == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = tokenizer(["What is the capital of Iran?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, model(**ids).logits)


def test_a_changed_base_is_refused_when_the_final_folder_loads(tmp_path, capitals_file):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.core.errors import RunError
    from dlkit.llm.models import load_trained

    base = tmp_path / "base"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama())
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_llama()).save_pretrained(base)
    _, run = train_run(tmp_path / "r", "partial", capitals_file, steps=1, lr=1e-3, unfreeze="last1", model=str(base))
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.01)  # a frozen layer
    model.save_pretrained(base)
    with pytest.raises(RunError, match=r"^\S+final was trained on other weights than those \S+base holds now"):
        load_trained(run)


@pytest.fixture(scope="module")
def bf16_llama(tmp_path_factory) -> Path:
    """builtin:tiny-llama saved in bf16, as users save real checkpoints to halve their size."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dlkit.builtin.tiny_lm import tiny_llama

    folder = tmp_path_factory.mktemp("bf16-llama")
    AutoModelForCausalLM.from_pretrained(tiny_llama(), dtype=torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_llama()).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("method", "precision"), [("full", "no"), ("full", "bf16"), ("partial", "bf16")])
def test_a_bf16_checkpoint_trained_at_lr_1e_5_changes_every_trained_weight(
    tmp_path, capitals_file, bf16_llama, method, precision
):
    """AdamW steps of ~1e-5 are below bf16's spacing at these weights' size: trained in bf16, 3% of the elements
    moved. In fp32 all but those with a zero gradient (embeddings of tokens the data never uses) do."""
    metrics, _ = train_run(
        tmp_path / "r",
        method,
        capitals_file,
        steps=10,
        lr=1e-5,
        model=str(bf16_llama),
        unfreeze="first2,last2",
        precision=precision,
    )
    layer_params = [n for n in metrics["trainable_param_names"] if ".layers." in n]
    assert set(layer_params) <= set(metrics["changed_param_names"])
    assert metrics["changed_params"] > 0.5 * metrics["trainable_params"]
    if method == "partial":
        assert all(".layers." in n for n in metrics["changed_param_names"])
        assert metrics["changed_params"] > 0.99 * metrics["trainable_params"]
