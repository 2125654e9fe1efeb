"""CLIP models through open_clip's own factory: one function returns the model, its train and eval
preprocessing and its tokenizer, whether the model is an open_clip architecture with a pretrained tag,
`builtin:tiny-clip`, a run folder written by `dlkit clip train`, or an open_clip `hf-hub:` id.

Architectures are data in open_clip (a JSON config per name); dlkit's own small architectures are
written as such JSON files into the cache and registered with `open_clip.add_model_config`, so every
model is built by the same `create_model_and_transforms` call.

The trainable heads on a frozen CLIP live here too: CoOp's class embeddings and prompt learner, and the
linear probe.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.core.errors import ConfigError, SourceError
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import warn
from dlkit.core.run import atomic_write_json
from dlkit.core.sources import cache_dir, check_hub_id, load_builtin, url_reachable
from dlkit.core.weights import check_file, check_folder, loading

CONFIG_FILE = "open_clip_config.json"  # what open_clip's `local-dir:` schema reads
WEIGHTS_FILE = "open_clip_model.safetensors"
NO_WEIGHTS = ("", "none", "random")
DEFAULT_WEIGHTS = "default"  # --pretrained left out: the architecture's first open_clip tag

# The image towers `dlkit clip train --image-encoder` offers. rn50 is open_clip's RN50 tower; the small
# ones keep the same families (modified ResNet with attention pooling, ViT) at a size a CPU trains in seconds.
IMAGE_ENCODERS: dict[str, dict[str, Any]] = {
    "rn50": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": None},
    "resnet-small": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "vit-small": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
}


@dataclass
class ClipBundle:
    """A model with everything needed to use it, plus a key naming its weights for the feature cache."""

    model: nn.Module
    preprocess_train: Any
    preprocess_eval: Any
    tokenizer: Any
    name: str  # what the user asked for, for reports
    key: str  # identity of architecture + weights (cache key part)
    weights: str = "none"  # the pretrained tag or weights file loaded; "none" for random weights

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", 77))


def build_clip(model: str, pretrained: str | None = DEFAULT_WEIGHTS, seed: int = 0) -> ClipBundle:
    """Resolve `--model`/`--pretrained` and create the model with open_clip's factory (eval mode)."""
    import open_clip

    from dlkit.core.sources import hub_scheme, resolve

    spec = model.strip()
    tag = (pretrained or DEFAULT_WEIGHTS).strip()
    # builtin:NAME, hf-hub:ID and paths as every group reads them; any other name is open_clip's to know
    source = resolve(spec, "model", flag="--model", check_hub=False, schemes={"hf-hub:": hub_scheme})
    if source.kind == "builtin":
        name = _register(source.value, _builtin_config(source.value))
        _no_tag(spec, tag)
        return _create(name, None, spec, f"{name}:seed{seed}", seed)  # the name carries the config's digest
    if spec.startswith("hf-hub:"):
        return _create(spec, None, spec, spec, seed)
    if source.kind == "local":
        folder = model_folder(Path(spec).expanduser())
        _no_tag(spec, tag)
        check_folder(folder, "--model")
        weights = folder / WEIGHTS_FILE
        stamp = f"{weights.stat().st_size}-{weights.stat().st_mtime_ns}" if weights.is_file() else "random"
        return _create(f"local-dir:{folder}", None, spec, f"{folder}:{stamp}", seed)
    name = spec.replace("/", "-")
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise SourceError(f"--model {spec}: not an open_clip architecture, a run folder or builtin:tiny-clip; {hint}")
    asked = tag
    if tag.lower() == DEFAULT_WEIGHTS:
        tag = default_tag(name, spec)
    if tag.lower() in NO_WEIGHTS:
        if asked.lower() != DEFAULT_WEIGHTS:  # default_tag has said why already
            random_weights_warning(f"--model {spec} --pretrained {tag or 'none'}")
        return _create(name, None, spec, f"{name}:random:seed{seed}", seed)
    if Path(tag).expanduser().is_file():
        weights = Path(tag).expanduser().resolve()
        check_file(weights, "--pretrained")  # safetensors, or a pickle of tensors only: open_clip reads it next
        return _create(name, str(weights), spec, f"{name}:{weights}:{weights.stat().st_mtime_ns}", seed)
    _check_tag(name, tag)
    return _create(name, tag, spec, f"{name}:{tag}", seed)


def default_tag(name: str, spec: str) -> str:
    """--pretrained left out: the architecture's first open_clip tag when its weights can be had; offline
    (or for an architecture without weights) "none", after one line saying that the weights are random."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        random_weights_warning(f"--model {spec}: open_clip has no pretrained weights for it")
        return "none"
    try:
        _check_tag(name, tags[0])
    except SourceError:
        random_weights_warning(
            f"--model {spec}: its default weights (--pretrained {tags[0]}) are not cached and cannot be downloaded here"
        )
        return "none"
    return tags[0]


def random_weights_warning(what: str) -> None:
    warn(
        f"{what}: the model has RANDOM weights, so its scores will be near chance; pass --pretrained TAG "
        "(see open_clip.list_pretrained_tags_by_model) or a weights file for real ones"
    )


def model_folder(path: Path) -> Path:
    """The folder holding open_clip_config.json: the path itself, or a clip run's final model."""
    for candidate in (path, path / "checkpoints" / "final"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate.resolve()
    raise SourceError(
        f"--model {path}: no {CONFIG_FILE} there; pass a run folder of `dlkit clip train`, "
        "an open_clip architecture name or builtin:tiny-clip"
    )


def _no_tag(spec: str, tag: str) -> None:
    if tag.lower() not in (*NO_WEIGHTS, DEFAULT_WEIGHTS):
        raise ConfigError(f"--pretrained {tag}: {spec} brings its own weights; leave --pretrained out")


def _check_tag(name: str, tag: str) -> None:
    """Unknown tags list the known ones; a known tag whose weights are not cached needs the Hub, checked fast."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        known = f"tags for {name}: {', '.join(tags)}" if tags else f"open_clip has no pretrained weights for {name}"
        raise SourceError(
            f"--pretrained {tag}: not a known tag or a weights file; {known}; "
            "or pass --pretrained none for random weights"
        )
    if _weights_cached(cfg):
        return
    hub_id = os.path.split(cfg.get("hf_hub", ""))[0]
    offline = (
        f"--pretrained {tag} for {name}: its weights are not cached and this machine is offline; "
        "use --pretrained none (random weights), a weights file, or --model builtin:tiny-clip"
    )
    if not hub_id or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        if hub_id or not url_reachable(cfg.get("url", "")):
            raise SourceError(offline)
        return

    try:
        check_hub_id(hub_id, "model", "--pretrained")
    except SourceError:
        raise SourceError(offline) from None


def _weights_cached(cfg: dict) -> bool:
    hub = cfg.get("hf_hub", "")
    if not hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _create(name: str, pretrained: str | None, display: str, key: str, seed: int) -> ClipBundle:
    import open_clip

    torch.manual_seed(seed)  # random towers (no pretrained weights) are reproducible
    local = Path(pretrained).is_file() if pretrained else name.startswith("local-dir:")
    files = loading(pretrained or name.removeprefix("local-dir:"), "--pretrained" if pretrained else "--model")
    try:
        with files if local else contextlib.nullcontext():  # local weights: their errors name the file
            model, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
                name, pretrained=pretrained
            )
    except RuntimeError as exc:  # a download that failed after the checks above
        reason = str(exc).splitlines()[0][:160]
        raise SourceError(
            f"--model {display} --pretrained {pretrained}: open_clip could not load it ({reason}); "
            "use --pretrained none or --model builtin:tiny-clip"
        ) from None
    model.eval()
    return ClipBundle(
        model,
        preprocess_train,
        preprocess_eval,
        open_clip.get_tokenizer(name),
        display,
        key,
        pretrained or ("own" if name.startswith(("local-dir:", "hf-hub:")) else "none"),
    )


# -- dlkit's own architectures as open_clip configs -----------------------------------------------------


def _builtin_config(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], load_builtin(name))


def clip_config(
    image_encoder: str = "resnet-small",
    embed_dim: int = 64,
    image_size: int | None = None,
    text_width: int = 64,
    text_layers: int = 2,
    text_heads: int = 4,
    context_length: int = 32,
) -> dict[str, Any]:
    """An open_clip model config: an `--image-encoder` tower and a transformer text tower of the given size."""
    if image_encoder not in IMAGE_ENCODERS:
        raise ConfigError(f"--image-encoder {image_encoder}: choose one of {', '.join(IMAGE_ENCODERS)}")
    vision = dict(IMAGE_ENCODERS[image_encoder])
    if image_size:
        vision["image_size"] = image_size
    if vision["patch_size"] is None and vision["image_size"] % 32:
        raise ConfigError(f"--image-size {vision['image_size']}: ResNet towers need a multiple of 32")
    return {
        "embed_dim": embed_dim,
        "vision_cfg": vision,
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": 49408,
            "width": text_width,
            "heads": text_heads,
            "layers": text_layers,
        },
    }


def _register(stem: str, config: dict[str, Any]) -> str:
    """Write `config` as an open_clip config file in the cache and register its folder; returns the name."""
    import open_clip

    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    name = f"dlkit-{stem}-{digest}"
    if name in open_clip.list_models():
        return name
    folder = cache_dir() / "clip-configs" / name
    path = folder / f"{name}.json"
    if not path.is_file():
        atomic_write_json(path, config)
    open_clip.add_model_config(folder)
    return name


def build_from_config(stem: str, config: dict[str, Any], seed: int = 0) -> ClipBundle:
    """A randomly initialised CLIP of the given config, through the factory (for training from scratch)."""
    name = _register(stem, config)
    return _create(name, None, stem, f"{name}:seed{seed}", seed)


def save_clip(model: nn.Module, config: dict[str, Any], folder: Path) -> Path:
    """Weights (safetensors) + open_clip_config.json, loadable with `--model FOLDER` or open_clip's local-dir:."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS_FILE))
    preprocess = dict(getattr(model.visual, "preprocess_cfg", {}))
    atomic_write_json(folder / CONFIG_FILE, {"model_cfg": config, "preprocess_cfg": preprocess})
    return folder


def scratch_card(image_encoder: str) -> CardInfo:
    """The model card's facts about a `clip train` final folder (what save_clip writes)."""
    return CardInfo(
        what=f"CLIP model ({image_encoder} image tower) trained from scratch",
        pipeline_tag="zero-shot-image-classification",
        library_name="open_clip",
        tags=["clip", "image-text-retrieval"],
        base="",
        usage="import open_clip\n\n"
        "model, _, preprocess = open_clip.create_model_and_transforms('local-dir:FOLDER')\n"
        "tokenizer = open_clip.get_tokenizer('local-dir:FOLDER')\n"
        "# from the Hub: 'hf-hub:REPO_ID' instead of 'local-dir:FOLDER'",
    )


def freeze(module: nn.Module) -> nn.Module:
    """No gradients and eval mode (BatchNorm statistics stay as they are)."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module.eval()


class ClassEmbeddings(nn.Module):
    """One trainable vector per class in the joint space, scored by cosine similarity x CLIP's temperature."""

    def __init__(self, init: torch.Tensor, logit_scale: float):
        super().__init__()
        self.weight = nn.Parameter(init.clone())  # (C, D)
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C)
        return self.logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(self.weight, dim=-1).T


class PromptLearner(nn.Module):
    """CoOp with class-specific context: `n_ctx` learnable token embeddings per class replace the first
    prompt tokens of "X X X X {class}." and go through CLIP's frozen text transformer."""

    def __init__(self, clip: nn.Module, tokenizer: Any, classes: list[str], n_ctx: int, logit_scale: float):
        super().__init__()
        if not hasattr(clip, "token_embedding"):
            raise ConfigError(
                "--mode prompt needs open_clip's own text transformer; this model's text tower is "
                "a Hugging Face model: use --mode embedding"
            )
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.pool_type = getattr(clip, "text_pool_type", "argmax")
        self.eos_id = getattr(clip, "text_eos_id", None)
        for module in (self.token_embedding, self.transformer, self.ln_final):
            freeze(module)
        self.positional_embedding.requires_grad_(False)
        if isinstance(self.text_projection, nn.Parameter):
            self.text_projection.requires_grad_(False)
        elif self.text_projection is not None:
            freeze(self.text_projection)
        prompts = [" ".join(["X"] * n_ctx) + f" {name}." for name in classes]
        self.register_buffer("tokens", tokenizer(prompts), persistent=False)  # (C, L)
        with torch.no_grad():
            init_tokens = tokenizer(["a photo of a"])[0, 1 : 1 + n_ctx]
            if n_ctx == 4:  # start at the zero-shot prompt "a photo of a {class}."
                ctx = self.token_embedding(init_tokens).unsqueeze(0).repeat(len(classes), 1, 1)
            else:
                ctx = torch.randn(len(classes), n_ctx, self.token_embedding.weight.shape[1]) * 0.02
        self.ctx = nn.Parameter(ctx)  # (C, n_ctx, width)
        self.n_ctx = n_ctx
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))

    def class_embeddings(self) -> torch.Tensor:
        """(C, D) normalised text embeddings of the learned prompts (CLIP.encode_text with our token embeddings)."""
        from open_clip.transformer import text_global_pool

        x = self.token_embedding(self.tokens)  # (C, L, width)
        x = torch.cat([x[:, :1], self.ctx, x[:, 1 + self.n_ctx :]], dim=1)
        x = x + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = text_global_pool(x, self.tokens, self.pool_type, eos_token_id=self.eos_id)  # (C, width)
        if isinstance(self.text_projection, nn.Linear):
            x = self.text_projection(x)
        elif self.text_projection is not None:
            x = x @ self.text_projection
        return F.normalize(x, dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C)
        return self.logit_scale * F.normalize(image_features, dim=-1) @ self.class_embeddings().T

    def train(self, mode: bool = True) -> PromptLearner:
        super().train(mode)
        self.transformer.eval()  # frozen: no dropout
        return self


class LinearProbe(nn.Module):
    """Standardised features (train mean/std) -> one linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.shape[0], num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)
