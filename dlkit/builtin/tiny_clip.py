"""builtin:tiny-clip: an open_clip CLIP config small enough to create and run in a second on a CPU.

A 2-layer ViT on 32x32 images (8x8 patches, width 32) and a 2-layer transformer text tower (width 32,
16 tokens, CLIP's BPE tokenizer), joined in a 32-dim space. Random weights: it exercises every code
path of zero-shot, CoOp and probes, and `dlkit clip train` starts from configs like it.
"""

from __future__ import annotations

from typing import Any


def tiny_clip_config() -> dict[str, Any]:
    """The open_clip model config (registered and built by dlkit.clip.models.build_clip)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
