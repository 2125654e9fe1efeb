"""builtin:tiny-vit-gpt2: transformers' VisionEncoderDecoderModel from a tiny ViT and a tiny GPT-2.

Generated once into the dlkit cache (random weights) as the same folders the real models come in:
  <root>/            VisionEncoderDecoderModel.save_pretrained + GPT-2 style tokenizer + ViT image processor
  <root>/encoder/    ViTModel + image processor      (like google/vit-base-patch16-224-in21k)
  <root>/decoder/    GPT2LMHeadModel + tokenizer     (like distilgpt2)
so both loading paths of `caption train --arch vit-gpt2` run offline: a whole model (`--model FOLDER`)
and an encoder + decoder pair (`--model FOLDER/encoder+FOLDER/decoder`).
"""

from __future__ import annotations

from pathlib import Path

from dlkit.builtin.corpus import bilingual_corpus
from dlkit.builtin.shapes import CAPTION_SHAPES, COLOURS
from dlkit.core.sources import cached_folder

VERSION = "v1"
IMAGE_SIZE = 64
VOCAB_SIZE = 600


def tiny_vit_gpt2() -> Path:
    return cached_folder(f"builtin/tiny-vit-gpt2-{VERSION}", _build)


def _build(root: Path) -> None:
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    processor = ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    encoder = ViTModel(
        ViTConfig(
            image_size=IMAGE_SIZE,
            patch_size=8,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
        ),
        add_pooling_layer=False,
    )
    decoder = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=64,
            n_layer=2,
            n_head=2,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    encoder.save_pretrained(root / "encoder")
    processor.save_pretrained(root / "encoder")
    decoder.save_pretrained(root / "decoder")
    tokenizer.save_pretrained(root / "decoder")
    model = from_encoder_decoder(str(root / "encoder"), str(root / "decoder"))
    configure_special_tokens(model, tokenizer)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    processor.save_pretrained(root)


def from_encoder_decoder(encoder: str, decoder: str):
    """VisionEncoderDecoderModel.from_encoder_decoder_pretrained with the decoder config marked as a
    cross-attending decoder up front (transformers 5 configs no longer define `is_decoder` by default)."""
    from transformers import AutoConfig, VisionEncoderDecoderModel

    decoder_config = AutoConfig.from_pretrained(decoder)
    decoder_config.is_decoder = True
    decoder_config.add_cross_attention = True
    return VisionEncoderDecoderModel.from_encoder_decoder_pretrained(encoder, decoder, decoder_config=decoder_config)


def configure_special_tokens(model, tokenizer) -> None:
    """GPT-2 has no pad token: pad with <|endoftext|>, and start decoding from it as distilgpt2 captioners do."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.decoder_start_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def _tokenizer():
    """A byte-level BPE tokenizer with GPT-2's single special token, trained on the bundled corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = [
        f"a {c} {s} left of right above below and on the top bottom is at" for c in COLOURS for s in CAPTION_SHAPES
    ]
    tok.train_from_iterator(bilingual_corpus(num_sentences=500) + words * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special,
        eos_token=special,
        unk_token=special,
        pad_token=special,
        clean_up_tokenization_spaces=False,
    )
