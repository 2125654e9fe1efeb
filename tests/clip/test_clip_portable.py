"""A clip run travels: copied elsewhere, open_clip's own `local-dir:` loader builds it, and its image-text
similarities equal the ones dlkit computes from the run."""

from __future__ import annotations

import shutil


def test_run_copied_elsewhere_loads_with_plain_open_clip(cli, tmp_path):
    import open_clip
    import torch
    from PIL import Image

    from dlkit.builtin.shapes import shapes_folder
    from dlkit.clip.models import build_clip

    run = tmp_path / "run"
    result = cli(
        "-q",
        "clip",
        "train",
        "--data",
        shapes_folder(num_images=300, image_size=64),
        "--output-dir",
        run,
        "--image-encoder",
        "resnet-small",
        "--image-size",
        "64",
        "--embed-dim",
        "32",
        "--text-width",
        "32",
        "--context-length",
        "16",
        "--max-steps",
        "2",
        "--batch-size",
        "32",
    )
    assert result.exit_code == 0, result.stderr
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    shutil.rmtree(run)

    ours = build_clip(str(moved))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{moved / 'checkpoints' / 'final'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{moved / 'checkpoints' / 'final'}")
    model.eval()
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    texts = ["a red circle", "a blue square"]
    with torch.no_grad():
        plain = (
            model.encode_image(preprocess(image)[None], normalize=True)
            @ model.encode_text(tokenizer(texts), normalize=True).T
        )
        expected = (
            ours.model.encode_image(ours.preprocess_eval(image)[None], normalize=True)
            @ ours.model.encode_text(ours.tokenizer(texts), normalize=True).T
        )
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-6)
