import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dlkit.builtin import BUILTINS

TINY = ["--image-size", "32", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
        "--batch-size", "16", "--save-every", "100000", "--eval-every", "100000", "--lr", "0.001"]


def first_loss(run: Path) -> float:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()][0]["loss"]


def test_cached_features_train_like_the_frozen_encoder(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache"))
    common = ["caption", "train", "--arch", "transformer", "--freeze-encoder", "--max-steps", "2", "--log-every",
              "1", *TINY]
    plain = cli(*common, "--output-dir", tmp_path / "plain")
    assert plain.exit_code == 0, plain.stderr
    cached = cli(*common, "--cache-features", "--output-dir", tmp_path / "cached")
    assert cached.exit_code == 0, cached.stderr
    files = list((tmp_path / "cache" / "caption-features").glob("*.safetensors"))
    assert len(files) == 1 and load_file(str(files[0]))["features"].shape == (540, 16, 128)  # train+val, 4x4, C
    # features are stored in float16: the same loss up to that rounding
    assert first_loss(tmp_path / "cached") == pytest.approx(first_loss(tmp_path / "plain"), rel=2e-3)
    again = cli(*common, "--cache-features", "--output-dir", tmp_path / "again")
    assert again.exit_code == 0 and "using cached encoder features" in again.stderr
    assert json.loads((tmp_path / "cached" / "metrics.json").read_text())["trainable_params"] == \
        json.loads((tmp_path / "plain" / "metrics.json").read_text())["trainable_params"]


def test_a_bare_train_on_builtin_data_is_short_and_says_what_next(cli, tmp_path):
    from dlkit.caption.config import CaptionConfig
    from dlkit.core.config import load_config

    assert load_config(CaptionConfig, None, {}).epochs == 1  # builtin:shapes: about a minute on a CPU
    assert load_config(CaptionConfig, None, {"data": str(tmp_path)}).epochs == 10
    assert load_config(CaptionConfig, None, {"epochs": 3}).epochs == 3
    run = tmp_path / "bare"
    result = cli("caption", "train", "--arch", "transformer", "--max-steps", "1", *TINY, "--output-dir", run)
    assert result.exit_code == 0, result.stderr
    assert f"run folder: {run}" in result.stderr and f"next: dlkit caption eval --run {run}" in result.stderr


def test_vit_gpt2_trains_predicts_and_evaluates(cli, tmp_path):
    run = tmp_path / "vit"
    result = cli("caption", "train", "--arch", "vit-gpt2", "--max-steps", "2", "--batch-size", "8",
                 "--eval-every", "2", "--output-dir", run, "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["arch"] == "vit-gpt2" and metrics["decoder"] == "GPT2LMHeadModel" and "val_bleu4" in metrics
    assert (run / "checkpoints" / "final" / "config.json").is_file()
    assert (run / "samples" / "val_captions.jsonl").is_file()
    image = sorted((run / "data" / "test_images.txt").read_text().split())[0]
    predicted = cli("caption", "predict", "--run", run, image, "--beam-size", "2", "--json")
    assert predicted.exit_code == 0, predicted.stderr
    assert isinstance(json.loads(predicted.stdout)[0]["caption"], str)
    evaluated = cli("caption", "eval", "--run", run, "--beam-size", "1", "--bertscore-model", "none", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "test_bleu4" in json.loads(evaluated.stdout)


def test_vit_gpt2_from_an_encoder_and_a_decoder(tmp_path):
    from dlkit.caption.hf import load_vision_encoder_decoder

    root = BUILTINS["tiny-vit-gpt2"].load()
    model, tokenizer, processor = load_vision_encoder_decoder(f"{root}/encoder+{root}/decoder")
    assert type(model.encoder).__name__ == "ViTModel" and model.decoder.config.add_cross_attention
    assert model.config.decoder_start_token_id == tokenizer.bos_token_id
    assert processor.size == {"height": 64, "width": 64}


def test_vit_gpt2_hub_ids_fail_in_one_line_offline(cli, tmp_path):
    result = cli("caption", "train", "--arch", "vit-gpt2", "--model",
                 "google/vit-base-patch16-224-in21k+distilgpt2", "--output-dir", tmp_path / "r")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "google/vit-base-patch16-224-in21k" in result.stderr and "offline" in result.stderr
