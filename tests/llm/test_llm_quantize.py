"""--quantize 4bit (QLoRA): LoRA trains on an NF4 base on the CPU, its adapter loads with plain PEFT on a 4-bit base,
export --merge writes plain weights of the dequantized base plus the adapter; bad combinations are one line."""

from __future__ import annotations

import json

import pytest
import torch
from checks import one_line_error
from llm_helpers import train_run

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, capitals_file):
    out = tmp_path_factory.mktemp("qlora") / "run"
    metrics, run = train_run(out, "lora", capitals_file, steps=12, lr=5e-2, quantize="4bit", log_every=1)
    return metrics, run


def test_a_4bit_lora_run_trains_and_its_loss_falls(qlora_run):
    metrics, run = qlora_run
    losses = [
        r["loss"] for r in map(json.loads, (run / "history.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert metrics["quantize"] == "4bit" and metrics["changed_params"] == 0 < metrics["adapter_params"]
    info = json.loads((run / "checkpoints" / "final" / "dlkit_llm.json").read_text())
    assert info["quantize"] == "4bit"


def prompt_ids(tokenizer):
    return tokenizer(["What is the capital of Iran?"], return_tensors="pt")


def test_the_adapter_loads_with_plain_peft_on_a_4bit_base(qlora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.llm.models import load_trained

    _, run = qlora_run
    ours, tokenizer, _ = load_trained(run)  # what eval and generate use: the base quantized again
    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_llama(), quantization_config=nf4, device_map="cpu")
    plain = PeftModel.from_pretrained(base, run / "checkpoints" / "final").eval()
    assert type(base.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    ids = prompt_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(plain(**ids).logits, ours(**ids).logits)
        with plain.disable_adapter():
            assert (plain(**ids).logits - ours(**ids).logits).abs().max() > 1e-3  # the adapter does something


def test_merged_export_is_the_dequantized_base_plus_the_adapter(cli, qlora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from dlkit.llm.models import load_trained

    _, run = qlora_run
    result = cli("llm", "export", "--run", run, "--merge", "--out", tmp_path / "merged")
    assert result.exit_code == 0, result.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    ours, tokenizer, _ = load_trained(run)
    ids = prompt_ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, ours(**ids).logits, atol=1e-4, rtol=1e-4)


def test_a_quantized_base_for_a_method_that_updates_it_is_refused(cli, capitals_file, tmp_path):
    one_line_error(
        cli(
            "llm",
            "train",
            "--method",
            "partial",
            "--quantize",
            "4bit",
            "--data",
            capitals_file,
            "--output-dir",
            tmp_path / "r",
        ),
        "--quantize 4bit: --method partial updates the base weights",
    )
    assert not (tmp_path / "r").exists()


def test_a_quantized_base_is_not_sharded(cli, capitals_file, tmp_path):
    one_line_error(
        cli(
            "llm",
            "train",
            "--quantize",
            "4bit",
            "--sharding",
            "fsdp",
            "--data",
            capitals_file,
            "--output-dir",
            tmp_path / "r",
        ),
        "--quantize 4bit with --sharding fsdp",
    )
    assert not (tmp_path / "r").exists()


def test_missing_bitsandbytes_names_the_extra(cli, capitals_file, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a)
    )
    one_line_error(
        cli("llm", "train", "--quantize", "4bit", "--data", capitals_file, "--output-dir", tmp_path / "r"),
        "--quantize 4bit needs bitsandbytes",
        "pip install 'dlkit[quantize]'",
    )
