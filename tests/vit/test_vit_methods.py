"""Each method learns builtin:digits above chance and changes only the weights it claims to train."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dlkit.vit.config import VitConfig
from dlkit.vit.methods import METHODS
from dlkit.vit.models import load_classifier, model_folder
from dlkit.vit.task import train

DIGITS = [str(i) for i in range(10)]
# (lr, min val accuracy on 10 classes, chance = 0.1); a linear probe on a random ViT is the weakest learner
SETTINGS = {"lora": (1e-2, 0.5), "last-block": (1e-2, 0.5), "linear": (5e-2, 0.25), "full": (1e-2, 0.5)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_each_method):
    return train_each_method(
        tmp_path_factory.mktemp("vit"),
        VitConfig,
        train,
        SETTINGS,
        epochs=4,
        max_train_samples=500,
        max_eval_samples=200,
    )


@pytest.fixture(scope="module")
def base_weights():
    model = load_classifier(model_folder("builtin:tiny-vit"), DIGITS)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(run_dir, base) -> set[str]:
    from dlkit.core.run import Run
    from dlkit.vit.models import load_trained

    model, _, names = load_trained(Run.open(run_dir, "vit"))
    assert names == DIGITS
    final = (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model).state_dict()
    assert set(final) == set(base)
    return {k for k, v in final.items() if not torch.equal(v, base[k])}


def test_every_method_has_its_learning_threshold():
    assert list(SETTINGS) == list(METHODS)


@pytest.mark.parametrize("method", list(SETTINGS))
def test_method_learns_digits(runs, method):
    _, metrics = runs[method]
    assert metrics["val_accuracy"] >= SETTINGS[method][1], metrics
    assert metrics["val_top5"] > metrics["val_accuracy"]
    assert metrics["method"] == method and metrics["num_classes"] == 10


def test_trainable_share_orders_the_methods(runs):
    pct = {m: metrics["trainable_pct"] for m, (_, metrics) in runs.items()}
    assert pct["linear"] < pct["lora"] < pct["last-block"] < pct["full"] == 100.0


def test_linear_changes_only_the_classifier(runs, base_weights):
    assert changed(runs["linear"][0], base_weights) == {"classifier.weight", "classifier.bias"}


def test_last_block_changes_only_the_last_block_and_classifier(runs, base_weights):
    diff = changed(runs["last-block"][0], base_weights)
    assert {"classifier.weight", "classifier.bias"} <= diff
    assert all(k.startswith("vit.layers.1.") or k.startswith("classifier.") for k in diff), diff
    assert any(k.startswith("vit.layers.1.mlp.") for k in diff)


def test_lora_changes_only_query_value_and_classifier(runs, base_weights):
    run_dir = runs["lora"][0]
    diff = changed(run_dir, base_weights)  # LoRA merged into q/v
    expected = {f"vit.layers.{i}.attention.{p}.weight" for i in range(2) for p in ("q_proj", "v_proj")}
    assert diff == expected | {"classifier.weight", "classifier.bias"}
    final = run_dir / "checkpoints" / "final"
    assert (final / "adapter_model.safetensors").is_file() and not (final / "model.safetensors").exists()


@pytest.mark.parametrize("method", ["lora", "last-block"])
def test_final_folders_hold_what_trained_and_export_writes_plain_weights(runs, method, cli, tmp_path):
    """The final folder is the adapter or the trained block, far smaller than the model; `vit export` writes
    plain transformers weights giving the same logits."""
    from transformers import AutoModelForImageClassification

    from dlkit.core.run import Run
    from dlkit.vit.models import load_trained

    run_dir, metrics = runs[method]
    final = run_dir / "checkpoints" / "final"
    weights = sum(f.stat().st_size for f in final.glob("*.safetensors"))
    assert weights < 1.2 * 4 * metrics["trainable_params"] + 4096 < 4 * metrics["total_params"]
    result = cli("vit", "export", "--run", run_dir, "--out", tmp_path / "plain")
    assert result.exit_code == 0, result.stderr
    exported = AutoModelForImageClassification.from_pretrained(tmp_path / "plain").eval()
    model, _, _ = load_trained(Run.open(run_dir, "vit"))
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_full_changes_every_block(runs, base_weights):
    diff = changed(runs["full"][0], base_weights)
    assert any(k.startswith("vit.layers.0.") for k in diff) and any(k.startswith("vit.embeddings.") for k in diff)


def test_saving_a_model_without_lora_leaves_peft_unimported(tmp_path):
    """Importing peft costs about 2 CPU-seconds, a tenth of a short linear probe's whole run."""
    code = (
        "import sys; from pathlib import Path; from transformers import AutoImageProcessor; "
        "from dlkit.vit.models import load_classifier, model_folder, save_classifier; "
        "folder = model_folder('builtin:tiny-vit'); "
        "save_classifier(load_classifier(folder, list('ab')), AutoImageProcessor.from_pretrained(folder), "
        f"Path({str(tmp_path)!r}), [], 'builtin:tiny-vit'); print('peft' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
