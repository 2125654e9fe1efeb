import json

from dlkit.builtin import BUILTINS

TINY = [
    "--image-size",
    "32",
    "--embed-dim",
    "16",
    "--hidden-dim",
    "32",
    "--attention-dim",
    "16",
    "--batch-size",
    "16",
    "--save-every",
    "100000",
    "--eval-every",
    "100000",
    "--lr",
    "0.001",
]


def test_a_frozen_encoder_runs_once_by_default_with_the_same_losses(cli, cached_and_uncached, tmp_path):
    # 38 steps of 64 see the 2,400 training pairs once: fewer would not be worth caching
    common = [
        "caption",
        "train",
        "--arch",
        "attention",
        "--freeze-encoder",
        "--max-steps",
        "38",
        *TINY,
        "--batch-size",
        "64",
    ]
    runs = cached_and_uncached(*common, steps=38)  # the decoder's dropout on
    assert "the frozen encoder runs once: features of 540 images" in runs["cached"].stderr  # train + val
    trains = cli(
        "caption",
        "train",
        "--arch",
        "attention",
        "--max-steps",
        "38",
        *TINY,
        "--batch-size",
        "64",
        "--output-dir",
        tmp_path / "trains",
    )  # tiny-cnn trains with the decoder: nothing to cache
    assert trains.exit_code == 0 and "runs once" not in trains.stderr


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
    result = cli(
        "caption",
        "train",
        "--arch",
        "vit-gpt2",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--eval-every",
        "2",
        "--output-dir",
        run,
        "--json",
    )
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
    result = cli(
        "caption",
        "train",
        "--arch",
        "vit-gpt2",
        "--model",
        "google/vit-base-patch16-224-in21k+distilgpt2",
        "--output-dir",
        tmp_path / "r",
    )
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "google/vit-base-patch16-224-in21k" in result.stderr and "offline" in result.stderr
