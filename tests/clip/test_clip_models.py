"""Real open_clip architectures (RN50, convnext_base, ViT-B-32) created with random weights through the same
factory call as pretrained ones: output shapes, the preprocessing path, and the heads of CoOp and the probe
(the image tower never trains). Each model is built once per module; forwards use one image."""

from __future__ import annotations

import pytest
import torch

from dlkit.clip.models import ClassEmbeddings, LinearProbe, PromptLearner, build_clip, build_from_config, clip_config


@pytest.fixture(scope="module", params=["RN50", "convnext_base", "ViT-B-32"])
def big(request):
    return build_clip(request.param, "none")


def test_shapes_through_the_preprocessing_path(big) -> None:
    from PIL import Image

    image = Image.new("RGB", (100, 80), (200, 30, 30))  # not square, not 224: resize + crop must fix both
    pixels = big.preprocess_eval(image)
    assert pixels.shape == (3, 224, 224)
    tokens = big.tokenizer(["a photo of a dog.", "a cat"])
    assert tokens.shape == (2, 77)
    with torch.no_grad():
        image_emb = big.model.encode_image(pixels[None], normalize=True)
        text_emb = big.model.encode_text(tokens, normalize=True)
    assert image_emb.shape[0] == 1 and text_emb.shape[0] == 2 and image_emb.shape[1] == text_emb.shape[1]
    torch.testing.assert_close(image_emb.norm(dim=-1), torch.ones(1))


def test_coop_prompt_head_starts_at_the_zero_shot_prompt_and_trains_only_context(big) -> None:
    classes = ["golden retriever", "cat"]
    head = PromptLearner(big.model, big.tokenizer, classes, n_ctx=4, logit_scale=100.0)
    trainable = [name for name, p in head.named_parameters() if p.requires_grad]
    assert trainable == ["ctx"]
    visual = {id(p) for p in big.model.visual.parameters()}
    assert not visual & {id(p) for p in head.parameters()}  # the image tower is not part of the trained model
    with torch.no_grad():
        expected = big.model.encode_text(big.tokenizer([f"a photo of a {c}." for c in classes]), normalize=True)
        torch.testing.assert_close(head.class_embeddings(), expected, atol=1e-4, rtol=1e-4)


def test_embedding_and_probe_heads_are_the_only_trainable_parameters(big) -> None:
    dim = big.model.encode_text(big.tokenizer(["x"])).shape[1]
    emb = ClassEmbeddings(torch.randn(3, dim), logit_scale=100.0)
    probe = LinearProbe(torch.zeros(dim), torch.ones(dim), num_classes=3)
    assert sum(p.numel() for p in emb.parameters() if p.requires_grad) == 3 * dim
    assert sum(p.numel() for p in probe.parameters() if p.requires_grad) == 3 * dim + 3
    assert emb(torch.randn(2, dim)).shape == probe(torch.randn(2, dim)).shape == (2, 3)


def test_small_towers_for_training_from_scratch() -> None:
    for encoder in ("resnet-small", "vit-small"):
        bundle = build_from_config(
            "test",
            clip_config(
                encoder, embed_dim=16, image_size=32, text_width=32, text_layers=1, text_heads=2, context_length=12
            ),
        )
        with torch.no_grad():
            emb = bundle.model.encode_image(torch.randn(2, 3, 32, 32))
        assert emb.shape == (2, 16)
        assert bundle.tokenizer(["a red circle"]).shape == (1, 12)
