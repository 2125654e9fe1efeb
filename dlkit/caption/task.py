"""`dlkit caption train`: the CaptionTask the engine trains, and what it writes into the run folder.

The run folder gets, next to the engine's files: data/vocab.json and data/{train,val,test}_images.txt
(so eval uses the same test images), samples/val_captions.jsonl (one fixed validation image captioned
after every evaluation) with samples/step_N.png, and the final model as checkpoints/final/
{model.safetensors, model.json, vocab.json} (or a save_pretrained folder for vit-gpt2).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from dlkit.caption.archs import ARCHS
from dlkit.caption.config import CaptionConfig
from dlkit.caption.data import (
    PAD_ID,
    CaptionPairs,
    ImageStore,
    clean_caption,
    collate,
    image_tensor,
    prepare_splits,
    write_split_files,
)
from dlkit.caption.models import MODEL_FILE, CaptionModel, ModelSpec, build_model, decode, use_pretrained_encoder
from dlkit.caption.viz import caption_card
from dlkit.core import features
from dlkit.core.config import checked
from dlkit.core.engine import gather
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import info
from dlkit.core.run import Run, atomic_write_json
from dlkit.core.sources import resolve
from dlkit.core.splits import record_splits
from dlkit.core.task import Task
from dlkit.data.captions import CaptionRecord, data_splits, write_prepared
from dlkit.data.images import open_image
from dlkit.metrics import corpus_bleu


class CaptionTask(Task):
    """lstm / attention / transformer captioners on a CNN encoder (vit-gpt2 lives in hf.py)."""

    def __init__(self, cfg: CaptionConfig, run: Run, prepared: tuple | None = None) -> None:
        self.cfg, self.run = cfg, run
        self.splits, self.vocab, self.stats = prepared or prepare_splits(cfg)
        self.skipped_items = (
            self.stats["skipped_missing_images"]
            + self.stats["skipped_empty_captions"]
            + self.stats["skipped_undecodable_images"]
        )
        self.spec = ModelSpec(
            arch=cfg.arch,
            encoder=cfg.encoder,
            vocab_size=len(self.vocab),
            max_len=self.vocab.max_len,
            image_size=cfg.resolved_image_size,
            embed_dim=cfg.embed_dim,
            hidden_dim=cfg.hidden_dim,
            attention_dim=cfg.attention_dim,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            dropout=cfg.dropout,
            alpha_c=cfg.alpha_c,
        )
        self.records = self.splits["train"] + self.splits["val"]
        self.index = {r.image: i for i, r in enumerate(self.records)}
        if run.writer:
            self.vocab.save(run.dir / "data" / "vocab.json")
            write_split_files(run.dir / "data", self.splits)
            write_prepared(run.dir / "data", [r for split in self.splits.values() for r in split], self.stats)
            atomic_write_json(run.dir / "data" / "stats.json", self.stats)
        info(
            f"{self.stats['images']} images ({self.stats['layout']} layout): "
            + ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
            + f"; vocabulary {len(self.vocab)} words, captions padded to {self.vocab.max_len} tokens"
        )
        self.sample_record = self.splits["val"][0] if self.splits["val"] else self.splits["train"][0]
        self.model: CaptionModel | None = None
        self.cached = False

    # -- engine hooks ---------------------------------------------------------------------------

    def build_model(self) -> CaptionModel:
        cfg = self.cfg
        model = build_model(self.spec, bool(cfg.pretrained_encoder))
        state = "trained with the decoder"
        if cfg.pretrained_encoder or cfg.freeze_encoder:
            model.encoder.freeze(except_last_block=cfg.finetune_encoder)
            state = "frozen except its last block" if cfg.finetune_encoder else "frozen"
        info(
            f"encoder {cfg.encoder} ({'ImageNet' if cfg.pretrained_encoder else 'random'} weights): "
            f"{model.encoder.feature_dim} features per cell, {state}"
        )
        self.model = model
        return model

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        assert self.model is not None  # build_model ran first: its mean/std normalise the images
        cfg, encoder = self.cfg, self.model.encoder
        source: Any = ImageStore([r.image for r in self.records], self.spec.image_size, encoder.mean, encoder.std)
        pairs = sum(len(r.captions) for r in self.splits["train"])
        if (
            cfg.cache_features
            and cfg.encoder_frozen
            and features.worth_caching(pairs, cfg.batch_size * cfg.grad_accum, cfg.max_steps)
        ):
            source = self._encoded(source)
        return self._pairs(self.splits["train"], source), (
            self._pairs(self.splits["val"], source) if self.splits["val"] else None
        )

    def _pairs(self, records: list[CaptionRecord], source: Any) -> CaptionPairs:
        ids, tokens = [], []
        for record in records:
            for caption in record.captions:
                ids.append(self.index[record.image])
                tokens.append(self.vocab.encode(caption))
        return CaptionPairs(ids, tokens, source)

    def _encoded(self, images: ImageStore) -> features.FeatureStore:
        """The frozen encoder's output (L, C) for every train/val image, computed once: each image's captions
        and every epoch read it instead of running the encoder again."""
        start = time.perf_counter()
        assert self.model is not None  # build_model ran first
        encoder = self.model.encoder
        store = features.precompute(images, torch.stack, encoder, batch_size=64, num_workers=self.cfg.num_workers).store
        self.cached = True
        info(
            f"the frozen encoder runs once: features of {len(images)} images computed in "
            f"{time.perf_counter() - start:.1f}s ({store.where()}); --no-cache-features runs it on every batch"
        )
        return store

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:
        return collate(examples)

    def num_items(self, batch: dict[str, Tensor]) -> int:
        return int(batch["tokens"][:, 1:].ne(PAD_ID).sum())  # the real target tokens the loss averages

    def training_step(self, model: CaptionModel, batch: dict[str, Tensor]):
        return model(batch)  # the loss is the forward: under DDP the wrapper must run it

    def evaluate(self, model: nn.Module, loader, accel) -> dict[str, float]:
        metrics = {"val_loss": self.val_loss(model, loader, accel)}
        hyps, refs = [], []
        seen: set[int] = set()
        raw = accel.unwrap_model(model)
        for batch in loader:
            first = [i for i, image_id in enumerate(batch["image_id"].tolist()) if image_id not in seen]
            if not first:
                continue
            seen.update(batch["image_id"][first].tolist())
            index = torch.tensor(first, device=batch["tokens"].device)
            features = raw.features({k: v[index] for k, v in batch.items()})
            for image_id, caption in zip(
                batch["image_id"][first].tolist(),
                decode(raw, features, self.vocab.max_len, self.cfg.beam_size),
                strict=True,
            ):
                hyps.append(self.vocab.decode(caption.tokens))
                refs.append([clean_caption(c) for c in self.records[image_id].captions])
        hyps, refs = gather(accel, hyps), gather(accel, refs)
        if hyps:
            metrics["val_bleu4"] = corpus_bleu(hyps, refs)["bleu4"]
        return metrics

    def val_loss(self, model: nn.Module, loader, accel) -> float:
        """The loss of the whole validation set as one batch: cross-entropy over all its real tokens plus the
        attention penalty over all its pairs, whatever the batches and however many processes share them."""
        sums = torch.zeros(4, dtype=torch.float64, device=accel.device)  # CE x tokens, tokens, penalty x pairs, pairs
        for batch in loader:
            loss, logs = model(batch)  # through the wrapper: under DDP its first forward syncs BatchNorm statistics
            tokens = logs["tokens"].double()  # the logs are tensors: summed on the device, read once at the end
            ce = logs.get("cross_entropy", loss.detach()).double()
            penalty = logs.get("attention_penalty", torch.zeros((), device=loss.device)).double()
            pairs = torch.tensor(float(len(batch["tokens"])), dtype=torch.float64, device=loss.device)
            sums += torch.stack([ce * tokens, tokens, penalty * pairs, pairs]).to(sums.device)
        if accel.num_processes > 1:
            sums = accel.reduce(sums, reduction="sum")
        return (sums[0] / sums[1] + accel.unwrap_model(model).alpha_c * sums[2] / sums[3]).item()

    def on_eval(self, model: CaptionModel, run: Run, step: int) -> None:
        """Caption the same validation image after every evaluation: samples/val_captions.jsonl + a PNG."""
        record = self.sample_record
        device = next(model.parameters()).device
        image = image_tensor(open_image(record.image), self.spec.image_size, model.encoder.mean, model.encoder.std)[
            None
        ].to(device)
        caption = decode(model, model.encoder(image), self.vocab.max_len, self.cfg.beam_size)[0]
        text = self.vocab.decode(caption.tokens)
        line = {"step": step, "image": record.image, "caption": text, "reference": record.captions[0]}
        run.append_jsonl("samples/val_captions.jsonl", line)
        caption_card(
            record.image,
            [f"step {step}: {text}", f"reference: {record.captions[0]}"],
            run.samples_dir / f"step_{step:07d}.png",
        )

    def save_model(self, model: CaptionModel, path: Path) -> None:
        from safetensors.torch import save_model

        path.mkdir(parents=True, exist_ok=True)
        save_model(model, str(path / "model.safetensors"))
        atomic_write_json(path / MODEL_FILE, asdict(self.spec))
        self.vocab.save(path / "vocab.json")

    def card_info(self) -> CardInfo:
        return CardInfo(
            what=f"{self.cfg.arch} image captioner on a {self.cfg.encoder} encoder",
            pipeline_tag="image-to-text",
            tags=["image-captioning"],
            usage_language="bash",
            usage="# dlkit's own format (model.safetensors, caption_model.json, vocab.json), read by:\n"
            "dlkit caption predict --run RUN IMAGE.jpg   # RUN: the run folder around this one",
        )

    def summary(self) -> dict[str, Any]:
        return {
            "arch": self.cfg.arch,
            "encoder": self.cfg.encoder,
            "vocab_size": len(self.vocab),
            "max_len": self.vocab.max_len,
            "feature_dim": self.model.encoder.feature_dim if self.model else None,
            "cached_features": self.cached,
            "train_images": len(self.splits["train"]),
            "val_images": len(self.splits["val"]),
            "test_images": len(self.splits["test"]),
        }


def train(cfg: CaptionConfig) -> dict[str, Any]:
    """Read and split the data (errors surface before a run folder exists), then train on the engine."""
    from dlkit.core.engine import fit

    checked(cfg)
    for part in [cfg.model] if Path(cfg.model).exists() else cfg.model.split("+"):  # ENCODER+DECODER
        resolve(part, "model", "--model", check_hub=False)  # read by vit-gpt2 only, but a bad one is refused anyway
    cnn = ARCHS[cfg.arch].decoder is not None  # else a whole VisionEncoderDecoderModel (dlkit.caption.hf)
    if cnn:  # before any work: the weights the encoder starts from, said when they are random
        cfg.pretrained_encoder = use_pretrained_encoder(cfg.encoder, cfg.pretrained_encoder)
        cfg.validate()
    prepared = prepare_splits(cfg)
    run = Run.create("caption", cfg, default_name=cfg.arch)
    record_splits(run, data_splits(prepared[0], prepared[2]["splits_given"], cfg.seed), resume=cfg.resume)
    if cnn:
        metrics = fit(CaptionTask(cfg, run, prepared), cfg, run)
    else:
        from dlkit.caption.hf import VisionEncoderDecoderTask

        metrics = fit(VisionEncoderDecoderTask(cfg, run, prepared), cfg, run)
    if run.writer:
        info(
            f"run folder: {run.dir}\nnext: dlkit caption eval --run {run.dir}   (then: dlkit caption predict "
            f"--run {run.dir} IMAGE.jpg, or dlkit caption compare {run.dir} OTHER_RUN)"
        )
    return metrics
