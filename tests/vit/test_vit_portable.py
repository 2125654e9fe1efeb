"""A vit run travels: copied elsewhere, plain transformers + PEFT load the final adapter onto its base and classify
an image with the probabilities `dlkit vit predict` reports."""

from __future__ import annotations

import json
import shutil

import pytest


def test_run_copied_elsewhere_classifies_with_plain_transformers_and_peft(cli, tmp_path):
    import torch
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    from dlkit.builtin.images import tiny_vit

    run = tmp_path / "run"
    result = cli(
        "vit",
        "train",
        "--model",
        "builtin:tiny-vit",
        "--method",
        "lora",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "20",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--output-dir",
        run,
    )
    assert result.exit_code == 0, result.stderr
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    image = tmp_path / "digit.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    predicted = cli("vit", "predict", "--run", moved, image, "--json")
    assert predicted.exit_code == 0, predicted.stderr
    ours = json.loads(predicted.stdout)[0]["top"]

    folder = moved / "checkpoints" / "final"
    base = AutoModelForImageClassification.from_pretrained(tiny_vit(), config=AutoConfig.from_pretrained(folder))
    model = PeftModel.from_pretrained(base, folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        probs = model(**processor([Image.open(image).convert("RGB")], return_tensors="pt")).logits.softmax(-1)[0]
    top = probs.topk(len(ours))
    assert [model.config.id2label[int(i)] for i in top.indices] == [t["label"] for t in ours]
    assert top.values.tolist() == pytest.approx([t["probability"] for t in ours], abs=1e-5)
