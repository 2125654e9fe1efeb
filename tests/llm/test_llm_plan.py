"""`dlkit llm plan`: the parts add up, the counting on meta tensors equals the real count, quantized layers take the
bytes bitsandbytes gives them, and the largest batch that fits is the largest that does.
(Predicted vs measured peaks: benchmarks/plan_vs_measured.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from checks import one_line_error

from dlkit.core import plan as core
from dlkit.llm.config import PlanConfig
from dlkit.llm.plan import plan


def test_the_plan_command_reports_every_part(cli):
    result = cli(
        "--json", "llm", "plan", "--method", "lora", "--batch-size", "4", "--max-length", "128", "--gpu-memory", "1"
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    parts = out["bytes"]
    assert parts["total"] == sum(parts[p] for p in core.PARTS) and out["fits"] and out["max_batch_size"] > 4
    assert 0 < parts["trainable"] < parts["weights"] and parts["optimizer"] == 2 * parts["gradients"]
    assert out["total_gib"] == pytest.approx(parts["total"] / 2**30, abs=1e-3)


def test_the_largest_batch_that_fits_is_the_largest():
    budget = 0.2
    found = plan(PlanConfig(max_length=256, gpu_memory=budget))["max_batch_size"]
    assert found >= 1
    assert plan(PlanConfig(max_length=256, batch_size=found, gpu_memory=budget))["fits"]
    assert not plan(PlanConfig(max_length=256, batch_size=found + 1, gpu_memory=budget))["fits"]


def test_saved_tensors_on_meta_equal_those_saved_on_the_cpu():
    """The plan's forward pass on meta tensors saves what the same pass saves on real ones."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.llm.models import decoder_layers

    config = AutoConfig.from_pretrained(tiny_llama())
    counts = {}
    for device in ("cpu", "meta"):
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        ids = torch.zeros(2, 64, dtype=torch.long, device=device)
        saved = core.saved_tensors(
            model, lambda m=model, i=ids: m.get_base_model().get_decoder()(input_ids=i), decoder_layers(model)
        )
        counts[device] = (saved.total, saved.per_block)
    assert counts["meta"] == counts["cpu"] and counts["cpu"][0] > 0


def test_gradient_checkpointing_keeps_only_block_inputs():
    whole = plan(PlanConfig(max_length=256))
    checkpointed = plan(PlanConfig(max_length=256, gradient_checkpointing=True))
    assert checkpointed["activations_gib"] < 0.5 * whole["activations_gib"]
    assert checkpointed["weights_gib"] == whole["weights_gib"]


def test_4bit_layers_take_the_bytes_bitsandbytes_gives_them():
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from dlkit.builtin.tiny_lm import tiny_llama

    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_llama(), quantization_config=nf4, device_map="cpu")
    real = predicted = 0
    dense = AutoModelForCausalLM.from_pretrained(tiny_llama())
    for module, linear in zip(model.modules(), dense.modules(), strict=True):
        if type(module).__name__ == "Linear4bit":
            state = module.weight.quant_state
            real += module.weight.numel() + state.absmax.numel() * state.absmax.element_size()
            real += state.state2.absmax.numel() * 4 + state.state2.code.numel() * 4 + state.code.numel() * 4
            predicted += core.quantized_bytes(linear, "4bit")
    assert predicted > 0 and abs(predicted - real) / real < 0.05


def test_a_quantized_plan_for_full_fine_tuning_is_refused(cli):
    one_line_error(
        cli("llm", "plan", "--method", "full", "--quantize", "4bit"),
        "--quantize 4bit: --method full updates the base weights",
    )
