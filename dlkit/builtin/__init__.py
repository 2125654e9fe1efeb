"""The `builtin:` registry: tiny real models and generated datasets with a known answer.

Entries are listed here by name and loaded lazily ("module:function"), so listing them imports
nothing heavy. A group adds its builtins by adding entries to `_ENTRIES` and a loader module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: Literal["model", "data"]
    group: str  # the group it is made for ("core" = shared)
    target: str  # "module:function" returning the model/dataset
    help: str

    def load(self, **kwargs: Any) -> Any:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)(**kwargs)


_ENTRIES = [
    # core
    Builtin(
        "regression",
        "data",
        "core",
        "dlkit.builtin.regression:load_data",
        "Noisy linear regression, y = Xw + b + eps; the optimum MSE is the noise variance.",
    ),
    Builtin(
        "mlp",
        "model",
        "core",
        "dlkit.builtin.regression:build_model",
        "A two-layer MLP regressor for builtin:regression (engine tests and benchmarks).",
    ),
    # llm
    Builtin(
        "tiny-llama",
        "model",
        "llm",
        "dlkit.builtin.tiny_lm:tiny_llama",
        "LlamaForCausalLM, 6 layers, hidden 64, BPE tokenizer and the Llama-3 chat template (random init).",
    ),
    Builtin(
        "tiny-gemma2",
        "model",
        "llm",
        "dlkit.builtin.tiny_lm:tiny_gemma2",
        "Gemma2ForCausalLM, 6 layers, hidden 64, BPE tokenizer and the Gemma chat template (random init).",
    ),
    Builtin(
        "instruct",
        "data",
        "llm",
        "dlkit.builtin.instruct:load_instruct",
        "Synthetic ShareGPT conversations with one right answer (capitals, reversed words, sums).",
    ),
    Builtin(
        "instruct-fa",
        "data",
        "llm",
        "dlkit.builtin.instruct:load_instruct_fa",
        "The Persian version of builtin:instruct.",
    ),
    Builtin(
        "reasoning",
        "data",
        "llm",
        "dlkit.builtin.reasoning:load_reasoning",
        "300 multi-step arithmetic word problems, GSM8K layout (worked steps, then '#### N'), for `llm reason`.",
    ),
    Builtin(
        "reasoning-fa",
        "data",
        "llm",
        "dlkit.builtin.reasoning:load_reasoning_fa",
        "The Persian version of builtin:reasoning (Persian digits).",
    ),
    # caption
    Builtin(
        "shapes",
        "data",
        "caption",
        "dlkit.builtin.shapes:shapes_folder",
        "600 images of two coloured shapes ('a red circle left of a blue square'), 5 captions each, "
        "Kaggle Flickr8k layout, with each object's bounding box.",
    ),
    Builtin(
        "shape-classes",
        "data",
        "caption",
        "dlkit.builtin.shapes:shape_classes_folder",
        "ImageFolder of 6 shape classes (circle, square, triangle, star, diamond, hexagon), "
        "40 train + 10 test images each.",
    ),
    Builtin(
        "tiny-vit-gpt2",
        "model",
        "caption",
        "dlkit.builtin.vit_gpt2:tiny_vit_gpt2",
        "VisionEncoderDecoderModel: ViT (64x64, 8x8 patches, 2 layers) + GPT-2 (2 layers), hidden 64, "
        "byte-level BPE tokenizer (random init); encoder/ and decoder/ also saved apart.",
    ),
    # clip
    Builtin(
        "tiny-clip",
        "model",
        "clip",
        "dlkit.builtin.tiny_clip:tiny_clip_config",
        "open_clip CLIP: 2-layer ViT on 32x32 images and 2-layer text transformer, 32-dim space (random init).",
    ),
    # vit
    Builtin(
        "tiny-vit",
        "model",
        "vit",
        "dlkit.builtin.images:tiny_vit",
        "ViTForImageClassification, 32x32 images, 8x8 patches, 2 layers, hidden 48, with its image processor.",
    ),
    Builtin(
        "tiny-deit",
        "model",
        "vit",
        "dlkit.builtin.images:tiny_deit",
        "Distilled DeiT (with-teacher checkpoint), 32x32 images, 2 layers, hidden 48, with its image processor.",
    ),
    Builtin(
        "digits",
        "data",
        "vit",
        "dlkit.builtin.images:digits",
        "scikit-learn's handwritten digits as an ImageFolder of 32x32 RGB PNGs: 10 classes, train/ and test/.",
    ),
    # adapter
    Builtin(
        "tiny-roberta",
        "model",
        "adapter",
        "dlkit.builtin.sentiment:tiny_roberta",
        "RobertaForSequenceClassification, 2 layers, hidden 64, with a byte-level BPE tokenizer.",
    ),
    Builtin(
        "sentiment",
        "data",
        "adapter",
        "dlkit.builtin.sentiment:sentiment",
        "Template movie-review sentences; positive iff the adjective is from the positive list. JSONL.",
    ),
    # charrnn
    Builtin(
        "markov",
        "data",
        "charrnn",
        "dlkit.builtin.charrnn_text:load_markov",
        "200k characters of a random order-2 Markov chain over 10 characters; its exact entropy rate "
        "H is the best validation loss any model can reach.",
    ),
    Builtin(
        "text",
        "data",
        "charrnn",
        "dlkit.builtin.charrnn_text:load_text",
        "About 6k characters of Shakespeare (public domain) for the demo.",
    ),
    # qa
    Builtin(
        "tiny-bert",
        "model",
        "qa",
        "dlkit.builtin.qa:build_model",
        "A tiny random BertForQuestionAnswering (2 layers, hidden 64), English+Persian WordPiece tokenizer.",
    ),
    Builtin(
        "qa-synthetic",
        "data",
        "qa",
        "dlkit.builtin.qa:load_data",
        "English+Persian SQuAD v2 facts (capital, river, ...) with distractors; train/validation/test JSON.",
    ),
]

BUILTINS: dict[str, Builtin] = {b.name: b for b in _ENTRIES}


def listed(group: str, kind: Literal["model", "data"]) -> str:
    """'builtin:tiny-llama, builtin:tiny-gemma2': a group's builtins of one kind, for help texts."""
    return ", ".join(f"builtin:{b.name}" for b in _ENTRIES if b.group == group and b.kind == kind)
