"""Captioning models: a CNN encoder giving a grid of features, and three decoders over it.

  lstm         the mean feature initialises the LSTM state; embedding + LSTM + linear (Vinyals et al.)
  attention    Show, Attend and Tell (Xu et al. 2015): additive attention over the grid at every word,
               a gate beta = sigmoid(f(h)) on the context, and the doubly stochastic penalty
  transformer  the grid projected to the model width (the trainable "resizing" layer) with learned
               positions is the memory of causal transformer decoder blocks (dlkit.nn.DecoderBlock)

Every decoder exposes the same three calls, so greedy and beam search are written once:
  init_state(features) -> state          a dict of tensors with the batch first
  step(features, state, tokens) -> (log_probs (B, V), state, alpha (B, L) | None)
  forward(features, tokens) -> logits (B, T, V) [, alphas (B, T, L)]   teacher forcing
"""

from __future__ import annotations

import json
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dlkit.caption.archs import ARCHS
from dlkit.caption.data import EOS_ID, PAD_ID, SOS_ID, UNK_ID, Vocab
from dlkit.core.errors import ConfigError, SourceError
from dlkit.core.progress import warn
from dlkit.core.weights import load_into
from dlkit.nn import AdditiveAttention, DecoderBlock, LearnedPositionalEmbedding

NEVER_EMITTED = (PAD_ID, SOS_ID, UNK_ID)  # a generated caption never says <pad>, <sos> or <unk>
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 10.0
MODEL_FILE = "model.json"


# -- encoders ---------------------------------------------------------------------------------------


class TinyCNN(nn.Module):
    """Three 3x3 stride-2 conv layers and a 1x1 layer that also reads two coordinate channels.

    The grid is 1/8 of the input (4x4 at the default 32x32). Each cell sees a 15-pixel window, a part of the image,
    so a decoder has to look in the right place; the coordinates tell it where that place is ("left of"
    needs positions, which a plain CNN barely has)."""

    def __init__(self, width: int = 32, out_dim: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(block(3, width, 2), block(width, 2 * width, 2), block(2 * width, 4 * width, 2))
        self.head = nn.Sequential(nn.Conv2d(4 * width + 2, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, images: Tensor) -> Tensor:
        x = self.body(images)  # (B, 4w, H/8, W/8)
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.head(torch.cat([x, xs.to(x.dtype), ys.to(x.dtype)], dim=1))  # (B, C, h, w)


class ImageEncoder(nn.Module):
    """A CNN without its classifier: images (B, 3, H, W) -> features (B, L = h*w, C)."""

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        self.name = name
        if name == "tiny-cnn":
            self.cnn: nn.Module = TinyCNN()
            self.feature_dim = self.cnn.out_dim
        elif name == "efficientnet_b0":
            net = efficientnet_b0(pretrained)
            self.cnn = net.features  # the classifier (avgpool + dropout + linear) is dropped
            self.feature_dim = net.classifier[-1].in_features  # 1280
        else:
            raise ValueError(f"unknown encoder {name!r}")
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.frozen = False
        self.finetune_last = False

    def last_block(self) -> nn.Module:
        """The block --finetune-encoder trains: tiny-cnn's head, EfficientNet's final 1x1 conv (320 -> 1280)."""
        return self.cnn.head if self.name == "tiny-cnn" else self.cnn[-1]

    def forward(self, images: Tensor) -> Tensor:
        grid = self.cnn(images)  # (B, C, h, w)
        return grid.flatten(2).transpose(1, 2)  # (B, h*w, C)

    def freeze(self, except_last_block: bool = False) -> None:
        """Freeze every weight (BatchNorm statistics too, via train()); optionally keep the last block trainable."""
        self.frozen, self.finetune_last = True, except_last_block
        for p in self.parameters():
            p.requires_grad_(False)
        if except_last_block:
            for p in self.last_block().parameters():
                p.requires_grad_(True)
        self.train(self.training)  # put the frozen BatchNorm layers in eval mode now, not at the first .train()

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.frozen:  # frozen BatchNorm must keep its running statistics
            self.cnn.eval()
            if self.finetune_last:
                self.last_block().train(mode)
        return self


def imagenet_weights(encoder: str) -> Any:
    """The torchvision ImageNet weights of a named encoder (None for tiny-cnn, which has none)."""
    from torchvision.models import EfficientNet_B0_Weights

    return {"efficientnet_b0": EfficientNet_B0_Weights.IMAGENET1K_V1}.get(encoder)


def cached_weights(weights: Any) -> Path:
    """Where torchvision keeps downloaded weights (torch.hub's checkpoints folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def use_pretrained_encoder(encoder: str, requested: bool | None) -> bool:
    """Whether the encoder starts from ImageNet weights. A named torchvision encoder does unless
    --no-pretrained-encoder; when its weights are neither cached nor downloadable it starts random, said in one
    line (as clip does for its default weights). --pretrained-encoder insists: missing weights are then an error
    when the model is built."""
    weights = imagenet_weights(encoder)
    if weights is None:
        if requested:
            raise ConfigError(
                f"--pretrained-encoder: --encoder {encoder} has no pretrained weights; pass "
                "--encoder efficientnet_b0 for ImageNet weights"
            )
        return False
    if requested is not None:
        return requested
    from dlkit.core.sources import url_reachable

    if cached_weights(weights).is_file() or url_reachable(weights.url):
        return True

    warn(
        f"--encoder {encoder}: its ImageNet weights are not in {cached_weights(weights).parent} and cannot be "
        "downloaded here, so the encoder starts from RANDOM weights; run once with internet, or pass "
        "--no-pretrained-encoder to ask for random weights"
    )
    return False


def efficientnet_b0(pretrained: bool) -> nn.Module:
    """torchvision's EfficientNet-B0; ImageNet weights by name, with a one-sentence error when offline."""
    from torchvision.models import efficientnet_b0 as build

    if not pretrained:
        return build(weights=None)
    weights = imagenet_weights("efficientnet_b0")
    cached = cached_weights(weights)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return build(weights=weights)
    except Exception as exc:  # URLError, timeout, DNS failure, truncated file
        raise SourceError(
            f"--pretrained-encoder: the EfficientNet-B0 ImageNet weights are not in {cached.parent} "
            f"and cannot be downloaded ({type(exc).__name__}); run once with internet or pass "
            "--no-pretrained-encoder"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


# -- decoders ---------------------------------------------------------------------------------------


class LSTMDecoder(nn.Module):
    """Show and Tell: the mean image feature sets (h0, c0); embedding -> LSTM -> linear."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features: Tensor) -> dict[str, Tensor]:
        pooled = features.mean(dim=1)  # (B, C)
        return {"h": torch.tanh(self.init_h(pooled)), "c": torch.tanh(self.init_c(pooled))}

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """features (B, L, C), tokens (B, T) starting with <sos> -> logits (B, T, V) for the next tokens."""
        state = self.init_state(features)
        hidden, _ = self.lstm(self.embed(tokens), (state["h"].unsqueeze(0), state["c"].unsqueeze(0)))
        return self.out(self.drop(hidden))

    def step(self, features: Tensor, state: dict[str, Tensor], tokens: Tensor):
        x = self.embed(tokens[:, -1:])  # (B, 1, E)
        out, (h, c) = self.lstm(x, (state["h"].unsqueeze(0), state["c"].unsqueeze(0)))
        return F.log_softmax(self.out(out[:, 0]), dim=-1), {"h": h[0], "c": c[0]}, None


class AttentionDecoder(nn.Module):
    """Show, Attend and Tell: at step t, alpha_t = softmax(f_att(a, h_{t-1})), z_t = beta_t * sum_i alpha_ti a_i
    with the gate beta_t = sigmoid(f_beta(h_{t-1})); the LSTM reads [E y_{t-1}; z_t]."""

    def __init__(
        self, vocab_size: int, feature_dim: int, embed_dim: int, hidden_dim: int, attention_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.attention = AdditiveAttention(feature_dim, hidden_dim, attention_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.f_beta = nn.Linear(hidden_dim, feature_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features: Tensor) -> dict[str, Tensor]:
        pooled = features.mean(dim=1)
        # the attention's projection of the grid does not change from word to word: computed once per caption
        return {
            "h": torch.tanh(self.init_h(pooled)),
            "c": torch.tanh(self.init_c(pooled)),
            "keys": self.attention.keys(features),
        }

    def _advance(self, features: Tensor, state: dict[str, Tensor], token: Tensor):
        context, alpha = self.attention(features, state["h"], keys=state["keys"])  # (B, C), (B, L)
        gate = torch.sigmoid(self.f_beta(state["h"]))  # (B, C)
        h, c = self.cell(torch.cat([self.embed(token), gate * context], dim=-1), (state["h"], state["c"]))
        return self.out(self.drop(h)), {"h": h, "c": c, "keys": state["keys"]}, alpha

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """-> logits (B, T, V), alphas (B, T, L)."""
        state = self.init_state(features)
        logits, alphas = [], []
        for t in range(tokens.shape[1]):
            step_logits, state, alpha = self._advance(features, state, tokens[:, t])
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)

    def step(self, features: Tensor, state: dict[str, Tensor], tokens: Tensor):
        logits, state, alpha = self._advance(features, state, tokens[:, -1])
        return F.log_softmax(logits, dim=-1), state, alpha


class TransformerDecoder(nn.Module):
    """Word + learned positional embeddings, causal DecoderBlocks with cross-attention to the projected grid."""

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int,
        ff_dim: int,
        num_layers: int,
        num_heads: int,
        max_len: int,
        max_grid: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(feature_dim, dim), nn.LayerNorm(dim))  # the "resizing" layer
        self.grid_pos = LearnedPositionalEmbedding(max_grid, dim)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.pos = LearnedPositionalEmbedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)

    def memory(self, features: Tensor) -> Tensor:
        projected = self.project(features)  # (B, L, D)
        return projected + self.grid_pos(projected)

    def init_state(self, features: Tensor) -> dict[str, Tensor]:
        return {"memory": self.memory(features)}

    def decode(self, memory: Tensor, tokens: Tensor) -> Tensor:
        x = self.embed(tokens)
        x = self.drop(x + self.pos(x))
        padding = tokens.eq(PAD_ID)  # (B, T) True = padding; <sos> is never padding, so no row is all-masked
        for block in self.blocks:
            x = block(x, memory, tgt_key_padding_mask=padding, causal=True)
        return self.out(self.norm(x))  # (B, T, V)

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        return self.decode(self.memory(features), tokens)

    def step(self, features: Tensor, state: dict[str, Tensor], tokens: Tensor):
        logits = self.decode(state["memory"], tokens)[:, -1]
        return F.log_softmax(logits, dim=-1), state, None


# -- the whole model --------------------------------------------------------------------------------


class CaptionModel(nn.Module):
    """Encoder + decoder; `features` may come precomputed (--cache-features), then the encoder is skipped."""

    def __init__(self, arch: str, encoder: ImageEncoder, decoder: nn.Module, alpha_c: float = 0.0) -> None:
        super().__init__()
        self.arch, self.encoder, self.decoder, self.alpha_c = arch, encoder, decoder, alpha_c

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["features"] if "features" in batch else self.encoder(batch["images"])

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """The training loss of a batch (images or cached features, and tokens). It is the forward so that
        DistributedDataParallel, which wraps the model, sees the encoder and decoder run."""
        return self.loss(self.features(batch), batch["tokens"])

    def logits(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """logits (B, T-1, V) predicting tokens[:, 1:], and the attention maps (B, T-1, L) if any."""
        out = self.decoder(features, tokens[:, :-1])
        return out if isinstance(out, tuple) else (out, None)

    def loss(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy over real tokens only (<pad> targets ignored) + the attention penalty."""
        logits, alphas = self.logits(features, tokens)
        targets = tokens[:, 1:]
        loss = caption_loss(logits, targets)
        logs: dict[str, Tensor] = {"tokens": targets.ne(PAD_ID).sum()}
        if alphas is not None and self.alpha_c:
            penalty = doubly_stochastic_penalty(alphas, targets.ne(PAD_ID))
            logs["cross_entropy"] = loss.detach()
            logs["attention_penalty"] = penalty.detach()
            loss = loss + self.alpha_c * penalty
        return loss, logs


def caption_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over non-<pad> targets: padding contributes neither loss nor gradient."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID)


def doubly_stochastic_penalty(alphas: Tensor, real: Tensor) -> Tensor:
    """(1 - sum_t alpha_ti)^2 averaged over cells i and images, summing only over steps that emit a real
    token. Averaging over cells (not summing, as the paper writes it) keeps the weight independent of the
    grid size, as in the common reference implementations."""
    coverage = (alphas * real.unsqueeze(-1).to(alphas.dtype)).sum(dim=1)  # (B, L)
    return ((1.0 - coverage) ** 2).mean()


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained model from its run folder (saved as model.json)."""

    arch: str
    encoder: str
    vocab_size: int
    max_len: int
    image_size: int
    embed_dim: int = 128
    hidden_dim: int = 256
    attention_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    alpha_c: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(spec: ModelSpec, pretrained_encoder: bool = False) -> CaptionModel:
    arch = ARCHS[spec.arch]
    if arch.decoder is None:
        raise ValueError(f"--arch {spec.arch} is not a CNN-encoder captioner")
    encoder = ImageEncoder(spec.encoder, pretrained_encoder)
    decoder = arch.decoder(spec, encoder.feature_dim, grid_cells(encoder, spec.image_size))
    return CaptionModel(spec.arch, encoder, decoder, spec.alpha_c if arch.attention else 0.0)


def grid_cells(encoder: ImageEncoder, image_size: int) -> int:
    """Number of feature cells L the encoder gives at this resolution (strides: 8 tiny-cnn, 32 efficientnet)."""
    stride = 8 if encoder.name == "tiny-cnn" else 32
    return math.ceil(image_size / stride) ** 2


# -- decoding ---------------------------------------------------------------------------------------


@dataclass
class Caption:
    tokens: list[int]  # without <sos>, up to and without <eos>
    score: float  # sum of log-probabilities (incl. <eos> when reached)
    alphas: list[list[float]] | None = None  # one attention map (L,) per emitted token, if the arch has one


def emittable(log_probs: Tensor) -> Tensor:
    """(B, V) log-probabilities with the NEVER_EMITTED tokens at -inf: decoding picks the best real word, so a
    rare word the vocabulary lacks never surfaces as <unk>."""
    never = torch.tensor(NEVER_EMITTED, device=log_probs.device)
    return log_probs.index_fill(-1, never, float("-inf"))


@torch.no_grad()
def greedy(model: CaptionModel, features: Tensor, max_len: int) -> list[Caption]:
    """Batched greedy decoding: the most likely word at each step, until <eos> or max_len - 2 words."""
    decoder = model.decoder
    batch = features.shape[0]
    state = decoder.init_state(features)
    tokens = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=features.device)
    scores = torch.zeros(batch, device=features.device)
    done = torch.zeros(batch, dtype=torch.bool, device=features.device)
    alphas: list[Tensor] = []
    for _ in range(max_len - 1):
        log_probs, state, alpha = decoder.step(features, state, tokens)
        log_probs = emittable(log_probs)
        best = log_probs.argmax(dim=-1)
        scores += torch.where(done, 0.0, log_probs.gather(1, best[:, None])[:, 0])
        best = torch.where(done, PAD_ID, best)
        tokens = torch.cat([tokens, best[:, None]], dim=1)
        if alpha is not None:
            alphas.append(alpha)
        done |= best.eq(EOS_ID)
        if done.all():
            break
    out = []
    for i in range(batch):
        words = _until_eos(tokens[i, 1:].tolist())
        maps = [a[i].tolist() for a in alphas[: len(words)]] if alphas else None
        out.append(Caption(words, float(scores[i]), maps))
    return out


@torch.no_grad()
def beam_search(model: CaptionModel, features: Tensor, max_len: int, beam_size: int) -> list[Caption]:
    """Beam search per image; a hypothesis ends at <eos> and the best finished one by total log-probability wins.
    With beam_size 1 it is exactly greedy decoding."""
    return [_beam_one(model, features[i : i + 1], max_len, beam_size) for i in range(features.shape[0])]


def decode(model: CaptionModel, features: Tensor, max_len: int, beam_size: int = 1) -> list[Caption]:
    """Batched greedy decoding for beam_size 1 (same result, faster), beam search otherwise."""
    return greedy(model, features, max_len) if beam_size == 1 else beam_search(model, features, max_len, beam_size)


def _beam_one(model: CaptionModel, features: Tensor, max_len: int, k: int) -> Caption:
    decoder = model.decoder
    state = decoder.init_state(features)
    tokens = torch.full((1, 1), SOS_ID, dtype=torch.long, device=features.device)
    scores = torch.zeros(1, device=features.device)
    maps: list[list[list[float]]] = [[]]
    finished: list[Caption] = []
    for step in range(max_len - 1):
        live = tokens.shape[0]
        log_probs, state, alpha = decoder.step(features.expand(live, -1, -1), state, tokens)
        log_probs = emittable(log_probs)
        total = (scores[:, None] + log_probs).flatten()  # (live * V,)
        top_scores, top = total.topk(min(k, total.numel()))
        rows, words = top // log_probs.shape[1], top % log_probs.shape[1]
        keep_rows, keep_words, keep_scores, keep_maps = [], [], [], []
        for score, row, word in zip(top_scores.tolist(), rows.tolist(), words.tolist(), strict=True):
            path_maps = maps[row] + ([alpha[row].tolist()] if alpha is not None else [])
            if word == EOS_ID or step == max_len - 2:
                words_so_far = tokens[row, 1:].tolist() + ([] if word == EOS_ID else [word])
                finished.append(
                    Caption(words_so_far, score, path_maps[: len(words_so_far)] if alpha is not None else None)
                )
            else:
                keep_rows.append(row)
                keep_words.append(word)
                keep_scores.append(score)
                keep_maps.append(path_maps)
        if len(finished) >= k or not keep_rows:
            break
        index = torch.tensor(keep_rows, device=features.device)
        tokens = torch.cat([tokens[index], torch.tensor(keep_words, device=features.device)[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=features.device)
        state = {name: value[index] for name, value in state.items()}
        maps = keep_maps
    return max(finished, key=lambda c: c.score)


def _until_eos(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i in (EOS_ID, PAD_ID):
            break
        out.append(i)
    return out


def load_trained(model_dir: Path) -> tuple[CaptionModel, Vocab, ModelSpec]:
    """Rebuild a trained lstm/attention/transformer model from checkpoints/final/."""
    spec = ModelSpec(**json.loads((model_dir / MODEL_FILE).read_text(encoding="utf-8")))
    model = load_into(build_model(spec), model_dir / "model.safetensors")
    return model.eval(), Vocab.load(model_dir / "vocab.json"), spec
