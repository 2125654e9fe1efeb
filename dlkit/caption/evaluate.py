"""`dlkit caption predict` and `dlkit caption eval`: captions from a trained run, and the standard metrics."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlkit.caption.archs import ARCHS
from dlkit.caption.config import EvalConfig, PredictConfig
from dlkit.caption.data import clean_caption, image_tensor
from dlkit.caption.models import decode
from dlkit.caption.viz import caption_grid
from dlkit.core.config import checked
from dlkit.core.errors import ConfigError, DataError, RunError
from dlkit.core.progress import info, track
from dlkit.core.run import Run, atomic_write_text
from dlkit.core.sources import resolve
from dlkit.core.splits import scored, split_fields
from dlkit.data.captions import CaptionRecord, load_caption_records
from dlkit.data.images import open_image
from dlkit.metrics import bertscore, cider_d, corpus_bleu, rouge
from dlkit.metrics.encoders import bertscore_model_or_default
from dlkit.metrics.guard import GuardedMetrics


@dataclass
class Generated:
    text: str
    alphas: list[list[float]] | None = None  # one attention map per word (attention arch)


class Captioner:
    """A trained run's model behind one call: image paths in, captions out (any arch)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.arch = run.read_config().get("arch")
        self.cnn = self.arch not in ARCHS or ARCHS[self.arch].decoder is not None  # else a VisionEncoderDecoder
        if not (run.model_dir / "model.safetensors").is_file() and not (run.model_dir / "config.json").is_file():
            raise RunError(f"{run.dir} has no trained model in {run.model_dir}; did its training finish?")
        if self.cnn:
            from dlkit.caption.models import load_trained

            self.model, self.vocab, self.spec = load_trained(run.model_dir)
            self.max_len = self.spec.max_len
        else:
            from dlkit.caption.hf import load_vision_encoder_decoder, saved_max_len

            self.model, self.tokenizer, self.processor = load_vision_encoder_decoder(run.model_dir)
            self.model.eval()
            self.max_len = saved_max_len(run.model_dir)

    def caption(self, paths: list[str], beam_size: int = 1, batch_size: int = 16) -> list[Generated]:
        out: list[Generated] = []
        for start in range(0, len(paths), batch_size):
            out.extend(self._batch(paths[start : start + batch_size], beam_size))
        return out

    @torch.no_grad()
    def _batch(self, paths: list[str], beam_size: int) -> list[Generated]:
        images = [open_image(p) for p in paths]
        if not self.cnn:
            from dlkit.caption.hf import generate_captions

            texts = generate_captions(self.model, self.tokenizer, self.processor, images, self.max_len, beam_size)
            return [Generated(t) for t in texts]

        encoder = self.model.encoder
        batch = torch.stack([image_tensor(im, self.spec.image_size, encoder.mean, encoder.std) for im in images])
        captions = decode(self.model, self.model.encoder(batch), self.max_len, beam_size)
        return [Generated(self.vocab.decode(c.tokens), c.alphas) for c in captions]


def predict(cfg: PredictConfig) -> list[dict]:
    """Caption each image; rows are saved to samples/predictions.csv, heatmaps to samples/heatmaps/."""
    checked(cfg)
    images, beam_size, heatmap = cfg.images, cfg.beam_size, cfg.heatmap
    run = Run.open(cfg.run, group="caption")
    captioner = Captioner(run)
    if heatmap and not (captioner.arch in ARCHS and ARCHS[captioner.arch].attention):
        attending = " or ".join(a.name for a in ARCHS.values() if a.attention)
        raise ConfigError(f"--heatmap needs a run trained with --arch {attending} (this run is {captioner.arch})")
    paths = [str(Path(p).expanduser().resolve()) for p in images]
    generated = captioner.caption(paths, beam_size)
    rows = [{"image": p, "caption": g.text} for p, g in zip(paths, generated, strict=True)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image", "caption"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    run.write_text("samples/predictions.csv", buf.getvalue())
    if heatmap:
        from dlkit.caption.viz import attention_heatmap, attention_strip

        for path, g in zip(paths, generated, strict=True):
            folder = run.samples_dir / "heatmaps" / Path(path).stem
            words = g.text.split()
            for k, (word, alpha) in enumerate(zip(words, g.alphas or [], strict=False)):
                attention_heatmap(path, alpha, word, folder / f"{k:02d}_{_safe(word)}.png")
            if words and g.alphas:
                attention_strip(path, g.alphas, words, run.samples_dir / "heatmaps" / f"{Path(path).stem}.png")
            info(f"heatmaps for {Path(path).name}: {folder} (all words: {folder}.png)")
    return rows


def _safe(word: str) -> str:
    return re.sub(r"[^\w-]+", "_", word)[:40] or "word"


def prepared_splits(run: Run) -> dict[str, list[CaptionRecord]]:
    """The run's splits (train, validation, test), as saved by train in data/prepared.json."""
    prepared = run.dir / "data"
    if not (prepared / "prepared.json").is_file():
        raise RunError(f"{run.dir} has no data/prepared.json; it was not written by `dlkit caption train`")
    records, _ = load_caption_records(str(prepared))
    saved = {"train": "train", "validation": "val", "test": "test"}
    return {name: [r for r in records if r.split == tag] for name, tag in saved.items()}


def split_records_of(run: Run, split: str) -> list[CaptionRecord]:
    """One of the run's splits (train, validation or test), its images checked."""
    chosen = prepared_splits(run)[split]
    if not chosen:
        raise RunError(f"{run.dir}: the {split} split is empty")
    return present(chosen, split)


def present(records: list[CaptionRecord], split: str) -> list[CaptionRecord]:
    missing = [r.image for r in records if not Path(r.image).is_file()]
    if missing:
        raise DataError(f"{split} image {missing[0]} no longer exists ({len(missing)} missing)")
    return records


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """BLEU-1..4, ROUGE-1/2/L, CIDEr-D (+ BERTScore) on a split (default: test) against every reference,
    written to eval.json and merged into metrics.json as SPLIT_*; plots/SPLIT_grid.png shows 5 images, and
    the worst-scored images (per-image ROUGE-L) are listed for error analysis. `limit` scores the first N
    images only; without `bertscore_model` an installed local encoder is used when there is one."""
    checked(cfg)
    beam_size, batch_size, bertscore_model = cfg.beam_size, cfg.batch_size, cfg.bertscore_model
    num_worst, split, limit = cfg.num_worst, cfg.split, cfg.limit
    run = Run.open(cfg.run, group="caption")
    captioner = Captioner(run)
    by_name = prepared_splits(run)
    part = scored(run, split, {name: [r.image for r in records] for name, records in by_name.items()})
    name, left_out = part.name, part.left_out
    records = present([by_name[name][i] for i in part.keep], name)
    if limit is not None and limit < len(records):
        info(f"scoring the first {limit} of {len(records)} {name} images (--limit)")
        records = records[:limit]
    bertscore_model, why = bertscore_model_or_default(bertscore_model)
    if why:
        info(why)
    if bertscore_model:  # a bad --bertscore-model fails here, not after captioning the split
        resolve(bertscore_model, "model", "--bertscore-model")
    generated: list[Generated] = []
    for start in track(
        range(0, len(records), batch_size),
        f"captioning the {name} images",
        total=(len(records) + batch_size - 1) // batch_size,
    ):
        generated.extend(
            captioner.caption([r.image for r in records[start : start + batch_size]], beam_size, batch_size)
        )
    hyps = [clean_caption(g.text) for g in generated]
    refs = [[clean_caption(c) for c in r.captions] for r in records]
    scores = GuardedMetrics(prefix=f"{name}_")
    scores.add("BLEU", lambda: corpus_bleu(hyps, refs))
    scores.add("ROUGE", lambda: rouge(hyps, refs))
    scores.add("CIDEr-D", lambda: {"cider_d": cider_d(hyps, refs)})
    if bertscore_model:
        scores.add(
            "BERTScore", lambda: {f"bertscore_{k}": v for k, v in bertscore(hyps, refs, model=bertscore_model).items()}
        )
    metrics: dict[str, Any] = {**scores.values, f"{name}_images": len(records), "beam_size": beam_size}
    per_image: list[dict[str, Any]] = [
        {"image": r.image, "caption": h, "references": refs_i, "rougeL": rouge([h], [refs_i])["rougeL"]}
        for r, h, refs_i in zip(records, hyps, refs, strict=True)
    ]
    worst = sorted(per_image, key=lambda row: row["rougeL"])[:num_worst]
    fields = split_fields(name, len(records), left_out)
    run.write_json("eval.json", {**fields, **metrics, **scores.failures(), "worst": worst, "predictions": per_image})
    run.write_metrics({**run.read_metrics(), **metrics})
    _write_plots(run, per_image, worst, name)
    for row in worst[:5]:
        info(
            f"worst: {Path(row['image']).name}: {row['caption']!r} vs {row['references'][0]!r} "
            f"(ROUGE-L {row['rougeL']:.2f})"
        )
    return {**fields, **metrics}


def _write_plots(run: Run, per_image: list[dict], worst: list[dict], split: str) -> None:
    def item(row: dict) -> tuple[str, list[str]]:
        return row["image"], [f"generated: {row['caption']}", f"reference: {row['references'][0]}"]

    caption_grid([item(r) for r in per_image[:5]], run.plots_dir / f"{split}_grid.png", f"{split} images")
    caption_grid([item(r) for r in worst[:5]], run.plots_dir / f"{split}_worst.png", f"worst {split} images (ROUGE-L)")
    atomic_write_text(
        run.samples_dir / f"{split}_predictions.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in per_image),
    )
