"""A vit-gpt2 captioner travels: copied elsewhere, plain transformers loads it and `generate()` with no decoding
arguments captions exactly as `dlkit caption predict` does (length and beams come from generation_config.json)."""

from __future__ import annotations

import json
import shutil


def test_vit_gpt2_run_copied_elsewhere_generates_with_plain_transformers(cli, tmp_path):
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    run = tmp_path / "run"
    result = cli(
        "caption",
        "train",
        "--arch",
        "vit-gpt2",
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "5e-3",
        "--beam-size",
        "2",
        "--eval-every",
        "100000",
        "--output-dir",
        run,
    )
    assert result.exit_code == 0, result.stderr
    image = sorted((run / "data" / "test_images.txt").read_text().split())[0]
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    predicted = cli("caption", "predict", "--run", moved, image, "--beam-size", "2", "--json")
    assert predicted.exit_code == 0, predicted.stderr
    expected = json.loads(predicted.stdout)[0]["caption"]

    folder = moved / "checkpoints" / "final"
    settings = json.loads((folder / "generation_config.json").read_text())
    assert (
        settings["num_beams"] == 2
        and settings["max_new_tokens"] == json.loads((folder / "caption.json").read_text())["max_len"]
    )
    model = VisionEncoderDecoderModel.from_pretrained(folder).eval()
    tokenizer, processor = AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
    pixels = processor([Image.open(image).convert("RGB")], return_tensors="pt").pixel_values
    with torch.no_grad():
        ids = model.generate(pixel_values=pixels)
    assert tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip() == expected
