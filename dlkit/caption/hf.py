"""--arch vit-gpt2: transformers' VisionEncoderDecoderModel (ViT encoder + GPT-2 decoder with cross-attention).

`--model` is a whole VisionEncoderDecoder (builtin:tiny-vit-gpt2, a local save_pretrained folder, a Hub id such
as nlpconnect/vit-gpt2-image-captioning) or ENCODER+DECODER, joined with
`from_encoder_decoder_pretrained` (google/vit-base-patch16-224-in21k+distilgpt2). The GPT-2 tokenizer gives the
text side: captions are the cleaned text followed by <|endoftext|>, and the loss ignores the padding (-100).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dlkit.builtin import BUILTINS
from dlkit.builtin.vit_gpt2 import configure_special_tokens, from_encoder_decoder
from dlkit.caption.config import CaptionConfig
from dlkit.caption.data import clean_caption, write_split_files
from dlkit.caption.viz import caption_card
from dlkit.core.engine import gather, mean_loss
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import info, quiet_transformers
from dlkit.core.run import Run, atomic_write_json
from dlkit.core.task import Task
from dlkit.core.weights import check_folder, loading
from dlkit.data.captions import CaptionRecord, write_prepared
from dlkit.data.images import open_image
from dlkit.metrics import corpus_bleu

IGNORE = -100
PRELOAD_BYTES = 512 * 2**20


def _path(spec: str) -> str:
    from dlkit.core.sources import resolve

    source = resolve(spec, "model", flag="--model")
    if source.kind == "builtin":
        if source.value != "tiny-vit-gpt2":
            raise ConfigError(
                f"--model builtin:{source.value} is not a vision encoder-decoder; use "
                "builtin:tiny-vit-gpt2 with --arch vit-gpt2"
            )
        return str(BUILTINS[source.value].load())
    return source.value


def load_vision_encoder_decoder(spec: str | Path):
    """(model, tokenizer, image processor) from a whole model or an ENCODER+DECODER pair."""
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    spec = str(spec)
    with quiet_transformers():
        if "+" in spec and not Path(spec).exists():
            encoder_spec, decoder_spec = spec.split("+", 1)
            encoder, decoder = _path(encoder_spec), _path(decoder_spec)
            model = from_encoder_decoder(encoder, decoder)
            tokenizer, processor = AutoTokenizer.from_pretrained(decoder), AutoImageProcessor.from_pretrained(encoder)
        else:
            path = _path(spec)
            if Path(path).is_dir():
                check_folder(path)
            with loading(path):
                model = VisionEncoderDecoderModel.from_pretrained(path)
            tokenizer, processor = AutoTokenizer.from_pretrained(path), AutoImageProcessor.from_pretrained(path)
    configure_special_tokens(model, tokenizer)
    return model, tokenizer, processor


class ProcessedImages:
    """pixel_values per image, from the model's own image processor; held in memory when small."""

    def __init__(self, paths: list[str], processor: Any) -> None:
        self.paths, self.processor = paths, processor
        first = self.load(0)
        self.cache = (
            [first] + [self.load(i) for i in range(1, len(paths))]
            if first.numel() * 4 * len(paths) <= PRELOAD_BYTES
            else None
        )

    def load(self, index: int) -> Tensor:
        return self.processor(open_image(self.paths[index]), return_tensors="pt").pixel_values[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.cache[index] if self.cache is not None else self.load(index)


class LabelledPairs(Dataset):
    def __init__(self, image_ids: list[int], labels: list[list[int]], images: ProcessedImages) -> None:
        self.image_ids, self.labels, self.images = image_ids, labels, images

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "pixel_values": self.images[self.image_ids[index]],
            "labels": torch.tensor(self.labels[index]),
            "image_id": self.image_ids[index],
        }


class VisionEncoderDecoderTask(Task):
    """Fine-tunes a VisionEncoderDecoderModel on the engine; the same splits and metrics as the CNN archs."""

    def __init__(self, cfg: CaptionConfig, run: Run, prepared: tuple) -> None:
        self.cfg, self.run = cfg, run
        self.splits, self.vocab, self.stats = prepared
        self.skipped_items = (
            self.stats["skipped_missing_images"]
            + self.stats["skipped_empty_captions"]
            + self.stats["skipped_undecodable_images"]
        )
        self.model, self.tokenizer, self.processor = load_vision_encoder_decoder(cfg.model)
        self.records = self.splits["train"] + self.splits["val"]
        self.index = {r.image: i for i, r in enumerate(self.records)}
        lengths = sorted(
            len(self.tokenizer(clean_caption(c)).input_ids) + 1 for r in self.splits["train"] for c in r.captions
        )
        self.max_len = cfg.max_len or lengths[int(0.95 * (len(lengths) - 1))]
        if run.writer:
            write_split_files(run.dir / "data", self.splits)
            write_prepared(run.dir / "data", [r for split in self.splits.values() for r in split], self.stats)
        info(
            f"vit-gpt2: {sum(p.numel() for p in self.model.parameters()):,} parameters, captions up to "
            f"{self.max_len} GPT-2 tokens"
        )

    def build_model(self):
        pooler = getattr(self.model.encoder, "pooler", None)
        if pooler is not None:  # the decoder cross-attends to the patch states; the pooled vector is never used,
            pooler.requires_grad_(False)  # and DDP fails on a trainable parameter that gets no gradient
        return self.model

    def labels(self, caption: str) -> list[int]:
        ids = self.tokenizer(clean_caption(caption)).input_ids[: self.max_len - 1] + [self.tokenizer.eos_token_id]
        return ids + [IGNORE] * (self.max_len - len(ids))

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        images = ProcessedImages([r.image for r in self.records], self.processor)

        def pairs(records: list[CaptionRecord]) -> LabelledPairs:
            ids = [self.index[r.image] for r in records for _ in r.captions]
            return LabelledPairs(ids, [self.labels(c) for r in records for c in r.captions], images)

        return pairs(self.splits["train"]), pairs(self.splits["val"]) if self.splits["val"] else None

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.stack([e["labels"] for e in examples]),
            "image_id": torch.tensor([e["image_id"] for e in examples]),
        }

    def num_items(self, batch: dict[str, Tensor]) -> int:
        return int(batch["labels"].ne(IGNORE).sum())  # the labelled tokens the loss averages

    def training_step(self, model, batch: dict[str, Tensor]):
        out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
        return out.loss, {"tokens": batch["labels"].ne(IGNORE).sum()}

    def evaluate(self, model, loader, accel) -> dict[str, float]:
        metrics = {"val_loss": mean_loss(self, model, loader, accel)}
        raw = accel.unwrap_model(model)
        hyps: list[str] = []
        refs: list[list[str]] = []
        seen: set[str] = set()
        for batch in loader:
            first = [i for i, image_id in enumerate(batch["image_id"].tolist()) if image_id not in seen]
            if not first:
                continue
            ids = batch["image_id"][first].tolist()
            seen.update(ids)
            texts = generate_from_pixels(
                raw, self.tokenizer, batch["pixel_values"][first], self.max_len, self.cfg.beam_size
            )
            hyps.extend(clean_caption(t) for t in texts)
            refs.extend([clean_caption(c) for c in self.records[i].captions] for i in ids)
        hyps, refs = gather(accel, hyps), gather(accel, refs)
        if hyps:
            metrics["val_bleu4"] = corpus_bleu(hyps, refs)["bleu4"]
        return metrics

    def on_eval(self, model, run: Run, step: int) -> None:
        record = (self.splits["val"] or self.splits["train"])[0]
        text = generate_captions(
            model, self.tokenizer, self.processor, [open_image(record.image)], self.max_len, self.cfg.beam_size
        )[0]
        run.append_jsonl(
            "samples/val_captions.jsonl",
            {"step": step, "image": record.image, "caption": text, "reference": record.captions[0]},
        )
        caption_card(
            record.image,
            [f"step {step}: {text}", f"reference: {record.captions[0]}"],
            run.samples_dir / f"step_{step:07d}.png",
        )

    def save_model(self, model, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        # generation_config.json carries dlkit's decoding, so a plain `model.generate(pixel_values)` elsewhere
        # captions exactly as `dlkit caption predict` does (transformers' own default would stop at 20 tokens)
        settings = model.generation_config
        settings.max_new_tokens, settings.num_beams, settings.do_sample = self.max_len, self.cfg.beam_size, False
        settings.max_length, settings.suppress_tokens = None, never_emitted(self.tokenizer)
        model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.processor.save_pretrained(path)
        atomic_write_json(path / "caption.json", {"max_len": self.max_len})

    def card_info(self) -> CardInfo:
        return CardInfo(
            what="VisionEncoderDecoder image captioner",
            pipeline_tag="image-to-text",
            library_name="transformers",
            tags=["image-captioning", "vision-encoder-decoder"],
            base_relation="finetune",
            usage="from transformers import (AutoImageProcessor, AutoTokenizer, "
            "VisionEncoderDecoderModel)\n\n"
            "model = VisionEncoderDecoderModel.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "processor = AutoImageProcessor.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "ids = model.generate(pixel_values=processor(images, return_tensors='pt').pixel_values)\n"
            "captions = tokenizer.batch_decode(ids, skip_special_tokens=True)  # as dlkit decodes",
        )

    def summary(self) -> dict[str, Any]:
        return {
            "arch": "vit-gpt2",
            "encoder": type(self.model.encoder).__name__,
            "decoder": type(self.model.decoder).__name__,
            "max_len": self.max_len,
            "train_images": len(self.splits["train"]),
            "val_images": len(self.splits["val"]),
            "test_images": len(self.splits["test"]),
        }


def never_emitted(tokenizer) -> list[int] | None:
    """The tokenizer's unknown, padding and start tokens that are not also its end token: a caption never says
    them (GPT-2's single <|endoftext|> is all four, so nothing is suppressed there)."""
    ids = {tokenizer.unk_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id} - {tokenizer.eos_token_id, None}
    return sorted(ids) or None


@torch.no_grad()
def generate_from_pixels(model, tokenizer, pixel_values: Tensor, max_len: int, beam_size: int) -> list[str]:
    ids = model.generate(
        pixel_values=pixel_values,
        max_new_tokens=max_len,
        num_beams=beam_size,
        do_sample=False,
        suppress_tokens=never_emitted(tokenizer),
    )
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def generate_captions(model, tokenizer, processor, images: list, max_len: int, beam_size: int) -> list[str]:
    device = next(model.parameters()).device
    pixel_values = processor(images, return_tensors="pt").pixel_values.to(device)
    model.eval()
    return generate_from_pixels(model, tokenizer, pixel_values, max_len, beam_size)


def saved_max_len(model_dir: Path) -> int:
    path = model_dir / "caption.json"
    if not path.is_file():
        raise DataError(f"{model_dir} has no caption.json; it was not saved by `dlkit caption train`")
    return int(json.loads(path.read_text(encoding="utf-8"))["max_len"])
