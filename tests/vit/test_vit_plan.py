"""`dlkit vit plan`: what each method trains and saves for backward, from the model's config alone."""

from __future__ import annotations

import json

from dlkit.vit.config import PlanConfig
from dlkit.vit.plan import plan


def test_each_method_plans_what_it_trains_and_saves():
    parts = {m: plan(PlanConfig(method=m, batch_size=16))["bytes"] for m in ("linear", "lora", "last-block", "full")}
    assert parts["linear"]["trainable"] < parts["lora"]["trainable"] < parts["last-block"]["trainable"]
    assert parts["last-block"]["trainable"] < parts["full"]["trainable"] and parts["full"]["weights"] < 1024
    # a linear probe backpropagates into the head only: the encoder saves nothing for it
    assert parts["linear"]["activations"] < 0.05 * parts["lora"]["activations"]
    assert parts["last-block"]["activations"] < parts["lora"]["activations"]
    for p in parts.values():
        assert p["gradients"] == p["trainable"] and p["optimizer"] == 2 * p["trainable"]


def test_the_plan_command_says_whether_it_fits(cli):
    result = cli("--json", "vit", "plan", "--method", "lora", "--image-size", "64", "--gpu-memory", "0.001")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["image_size"] == 64 and not out["fits"] and out["max_batch_size"] < out["batch_size"]
