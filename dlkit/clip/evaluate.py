"""Zero-shot classification: class embeddings from prompt templates (ensembled by averaging normalised text
embeddings, as open_clip's build_zero_shot_classifier does), scored against cached image features, with the
per-class report; template-set comparison and per-class template search on the same features; the
retrieval metrics of a contrastive model's validation pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlkit.classify.classifier import write_report_csv
from dlkit.clip.config import ClipSource, FixClassConfig, RetrievalEvalConfig, TemplatesConfig, ZeroShotConfig
from dlkit.clip.data import LabeledImages, load_split
from dlkit.clip.features import ImageFeatures, image_features, text_features
from dlkit.clip.models import ClipBundle, build_clip
from dlkit.clip.templates import fill, read_template_file, resolve_one, resolve_templates
from dlkit.core import plots
from dlkit.core.config import checked
from dlkit.core.errors import ConfigError
from dlkit.core.plots import plot_confusion_matrix
from dlkit.core.run import Run
from dlkit.core.splits import canonical, scored, split_fields
from dlkit.data.captions import load_caption_records, readable_records, split_records
from dlkit.metrics import classification_report, topk_accuracy, worst_classes


@dataclass
class Prepared:
    """What every classifying command starts from: the model, the images and their cached features."""

    bundle: ClipBundle
    images: LabeledImages
    feats: ImageFeatures

    @property
    def classes(self) -> list[str]:
        return self.images.classes


def prepared(cfg: ClipSource, split: str | None = None) -> Prepared:
    images = load_split(cfg.data, split or cfg.split, cfg.classnames)
    bundle = build_clip(cfg.model, cfg.pretrained, cfg.seed)
    feats = image_features(bundle, images, cfg.batch_size, cfg.num_workers, cfg.strict)
    return Prepared(bundle, images, feats)


def class_embeddings(bundle: ClipBundle, classes: list[str], templates: list[str]) -> torch.Tensor:
    """(C, D): each class's templates embedded, normalised, averaged and normalised again."""
    texts = [fill(t, c) for c in classes for t in templates]
    per_text = text_features(bundle, texts).view(len(classes), len(templates), -1)  # (C, T, D), unit rows
    return F.normalize(per_text.mean(dim=1), dim=-1)


def logits(image_feats: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
    """(N, C) cosine similarities x 100 (CLIP's trained temperature is ~100)."""
    return 100.0 * F.normalize(image_feats, dim=-1) @ class_emb.T


def score(scores: torch.Tensor, labels: torch.Tensor, classes: list[str], worst: int = 5) -> dict[str, Any]:
    report = classification_report(labels, scores.argmax(dim=1), labels=classes)
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, min(5, len(classes))),
        "macro_precision": report["macro"]["precision"],
        "macro_recall": report["macro"]["recall"],
        "macro_f1": report["macro"]["f1"],
        "num_images": report["num_samples"],
        "num_classes": len(classes),
        "worst_classes": [
            {k: row[k] for k in ("class", "f1", "precision", "recall", "support")}
            for row in worst_classes(report, n=worst)
        ],
        "report": report,
    }


def open_results(cfg: Any, default_name: str) -> Run:
    run = Run.create("clip", cfg, default_name, command=default_name)
    run.write_config(cfg, command=default_name)
    return run


def write_report(
    run: Run, result: dict[str, Any], scores: torch.Tensor, feats: ImageFeatures, classes: list[str], prefix: str = ""
) -> None:
    """report.csv, plots/confusion_matrix.png, plots/per_class_f1.png and samples/predictions.csv."""
    report = result["report"]
    write_report_csv(report, run.dir / f"{prefix}report.csv")
    plot_confusion_matrix(report["confusion_matrix"], classes, run.plots_dir / f"{prefix}confusion_matrix.png")
    rows = sorted(report["per_class"], key=lambda r: r["f1"])[:40]
    plots.bar_chart(
        [r["class"] for r in rows],
        [r["f1"] for r in rows],
        run.plots_dir / f"{prefix}per_class_f1.png",
        ylabel="F1",
        title="per-class F1 (lowest first)",
    )
    probs = scores.softmax(dim=1)
    lines = ["image,true,predicted,confidence,correct"]
    for path, label, row in zip(feats.paths, feats.labels.tolist(), probs, strict=True):
        pred = int(row.argmax())
        lines.append(f"{_csv(path)},{_csv(classes[label])},{_csv(classes[pred])},{row[pred]:.4f},{int(pred == label)}")
    run.write_text(f"samples/{prefix}predictions.csv", "\n".join(lines) + "\n")


def _csv(value: str) -> str:
    return f'"{value}"' if any(ch in value for ch in ',"\n') and '"' not in value else value


def summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "report"}


# -- commands --------------------------------------------------------------------------------------


def zeroshot(cfg: ZeroShotConfig) -> dict[str, Any]:
    checked(cfg)
    templates = resolve_templates(cfg.templates)
    prep = prepared(cfg)
    run = open_results(cfg, "zeroshot")
    scores = logits(prep.feats.features, class_embeddings(prep.bundle, prep.classes, templates))
    result = score(scores, prep.feats.labels, prep.classes, cfg.worst)
    write_report(run, result, scores, prep.feats, prep.classes)
    metrics = {
        "command": "zeroshot",
        "model": cfg.model,
        "pretrained": prep.bundle.weights,
        "data": cfg.data,
        **split_fields(prep.images.split, len(prep.feats.labels)),
        "num_templates": len(templates),
        **summary(result),
        "skipped_items": len(prep.feats.skipped),
        "features_cached": prep.feats.cached,
        "output_dir": str(run.dir),
    }
    run.write_metrics(metrics)
    run.write_json("report.json", result["report"])
    return metrics


def templates(cfg: TemplatesConfig) -> dict[str, Any]:
    """One row per template set, all on the same image features (encoded at most once)."""
    checked(cfg)
    sets = [s.strip() for s in cfg.sets.split(",") if s.strip()]
    if not sets:
        raise ConfigError("--sets needs at least one template set or file")
    resolved = {name: resolve_one(name, "--sets") for name in sets}
    prep = prepared(cfg)
    run = open_results(cfg, "templates")
    rows = []
    for name, templates in resolved.items():
        scores = logits(prep.feats.features, class_embeddings(prep.bundle, prep.classes, templates))
        result = score(scores, prep.feats.labels, prep.classes)
        rows.append(
            {
                "set": Path(name).name if Path(name).is_file() else name,
                "templates": len(templates),
                "top1": result["top1"],
                "top5": result["top5"],
                "macro_f1": result["macro_f1"],
            }
        )
    _bar_rows(run, rows)
    metrics = {
        "command": "templates",
        "model": cfg.model,
        "pretrained": prep.bundle.weights,
        "data": cfg.data,
        **split_fields(prep.images.split, len(prep.feats.labels)),
        "rows": rows,
        "best": max(rows, key=lambda r: r["top1"])["set"],
        "num_images": len(prep.feats.labels),
        "skipped_items": len(prep.feats.skipped),
        "output_dir": str(run.dir),
    }
    run.write_metrics(metrics)
    return metrics


def _bar_rows(run: Run, rows: list[dict[str, Any]]) -> None:
    plots.bar_chart(
        [r["set"] for r in rows],
        [r["top1"] for r in rows],
        run.plots_dir / "templates_top1.png",
        ylabel="top-1 accuracy",
        title="template sets",
    )


def fix_class(cfg: FixClassConfig) -> dict[str, Any]:
    """Score candidate templates for one class only: the other classes keep the --templates embedding."""
    checked(cfg)
    base_templates = resolve_templates(cfg.templates)
    path = Path(cfg.candidates).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--candidates {cfg.candidates}: "
            + ("a folder, not a file of templates" if path.is_dir() else "no such file")
        )
    candidates = read_template_file(path, "--candidates")
    images = load_split(cfg.data, cfg.split, cfg.classnames)
    target = _class_index(cfg.class_name, images)
    bundle = build_clip(cfg.model, cfg.pretrained, cfg.seed)
    feats = image_features(bundle, images, cfg.batch_size, cfg.num_workers, cfg.strict)
    run = open_results(cfg, "fix-class")
    base = class_embeddings(bundle, images.classes, base_templates)
    classname = images.classes[target]

    def evaluate(class_emb: torch.Tensor, label: str) -> dict[str, Any]:
        result = score(logits(feats.features, class_emb), feats.labels, images.classes)
        row = result["report"]["per_class"][target]
        return {
            "template": label,
            "class_f1": row["f1"],
            "class_precision": row["precision"],
            "class_recall": row["recall"],
            "top1": result["top1"],
        }

    rows = [evaluate(base, "(baseline: --templates)")]
    for template in candidates:
        emb = base.clone()
        emb[target] = class_embeddings(bundle, [classname], [template])[0]
        rows.append(evaluate(emb, template))
    best, verdict = pick_best(rows[1:], classname)
    _write_rows_csv(run, rows)
    metrics = {
        "command": "fix-class",
        "class": classname,
        **split_fields(images.split, len(feats.labels)),
        "baseline": rows[0],
        "best": best,
        "verdict": verdict,
        "improved": best is not None and best["class_f1"] > rows[0]["class_f1"],
        "rows": rows,
        "num_images": len(feats.labels),
        "skipped_items": len(feats.skipped),
        "output_dir": str(run.dir),
    }
    run.write_metrics(metrics)
    return metrics


def pick_best(candidates: list[dict[str, Any]], classname: str) -> tuple[dict[str, Any] | None, str]:
    """(the candidate ahead of all others on the class's F1, then overall top-1; a sentence saying so). None when
    no candidate scores the class at all (F1 0: none is better at fixing it) or when the leaders tie."""

    def key(row: dict[str, Any]) -> tuple[float, float]:
        return row["class_f1"], row["top1"]

    top = max(key(r) for r in candidates)
    leaders = [r for r in candidates if key(r) == top]
    if top[0] == 0:
        return None, f"no best template: every candidate scores F1 0 on {classname!r}"
    if len(leaders) > 1:
        return None, (
            f"no best template: {len(leaders)} candidates tie at F1 {top[0]:.4g} and top-1 {top[1]:.4g} "
            f"on {classname!r}"
        )
    return leaders[0], f"best: {leaders[0]['template']}"


def _class_index(name: str, images: LabeledImages) -> int:
    for candidates in (images.classes, images.folders):
        if name in candidates:
            return candidates.index(name)
    lowered = [c.lower() for c in images.classes]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    import difflib

    close = difflib.get_close_matches(name.lower(), lowered, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"classes: {', '.join(images.classes[:12])}"
    raise ConfigError(f"--class {name!r} is not a class of --data {images.where}; {hint}")


def _write_rows_csv(run: Run, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    run.write_text("candidates.csv", buf.getvalue())


def retrieval_metrics(
    rows: list[tuple[torch.Tensor, torch.Tensor, int]], scale: float, prefix: str = "val_"
) -> dict[str, float]:
    """Recall@1/5/10 both ways over every image and caption of `rows` (image embedding, caption embedding, the
    caption's image id); PREFIX+loss is the caption->image cross-entropy at the model's temperature."""
    images: dict[int, torch.Tensor] = {}
    for image_emb, _, owner in rows:
        images.setdefault(owner, image_emb)
    image_ids = sorted(images)
    column = {image_id: j for j, image_id in enumerate(image_ids)}
    return recall_at_k(
        torch.stack([images[i] for i in image_ids]),
        torch.stack([r[1] for r in rows]),
        torch.tensor([column[int(r[2])] for r in rows]),
        scale,
        prefix,
    )


def recall_at_k(
    image_matrix: torch.Tensor, text_matrix: torch.Tensor, truth: torch.Tensor, scale: float, prefix: str
) -> dict[str, float]:
    """(I, D) image and (T, D) caption embeddings (normalised), `truth` (T,) each caption's image row."""
    sims = text_matrix @ image_matrix.T  # (T, I)
    out = {f"{prefix}loss": F.cross_entropy(scale * sims, truth).item()}
    t2i_rank = (sims > sims.gather(1, truth[:, None])).sum(dim=1)  # images scored above the right one
    i2t_best = torch.full((len(image_matrix),), len(text_matrix), dtype=torch.long)
    i2t_order = sims.T.argsort(dim=1, descending=True)  # (I, T)
    for j in range(len(image_matrix)):
        hits = (truth[i2t_order[j]] == j).nonzero()
        i2t_best[j] = hits[0, 0] if len(hits) else len(text_matrix)
    for k in (1, 5, 10):
        out[f"{prefix}t2i_r{k}"] = (t2i_rank < k).float().mean().item()
        out[f"{prefix}i2t_r{k}"] = (i2t_best < k).float().mean().item()
    out[f"{prefix}mean_recall"] = sum(out[f"{prefix}{d}_r{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)) / 6
    return out


def caption_retrieval(
    bundle: ClipBundle, records: list[Any], split: str, batch_size: int = 64, cache: bool = True
) -> dict[str, Any]:
    """Recall@1/5/10 both ways over one split of image-caption records (every image against every caption of
    the split), named for the split (test_*, val_*, train_*) with its size. `cache=False` for weights that
    the feature cache cannot name (a model still in training)."""
    prefix = "val_" if split == "validation" else f"{split}_"
    images = LabeledImages([r.image for r in records], [0] * len(records), ["image"], ["."], split)
    feats = image_features(bundle, images, batch_size, cache=cache)
    kept = {path: i for i, path in enumerate(feats.paths)}
    captions = [(caption, kept[r.image]) for r in records if r.image in kept for caption in r.captions]
    if not captions:
        raise ConfigError(f"the {split} split has no captioned image to retrieve")
    texts = text_features(bundle, [c for c, _ in captions], cache=cache)
    scale = float(bundle.model.logit_scale.detach().exp().clamp(max=100.0))
    metrics = recall_at_k(
        F.normalize(feats.features, dim=-1), texts, torch.tensor([i for _, i in captions]), scale, prefix
    )
    return {
        **split_fields(split, len(feats.paths)),
        f"{prefix}images": len(feats.paths),
        f"{prefix}captions": len(captions),
        **metrics,
        "skipped_items": len(feats.skipped),
    }


def eval_retrieval(cfg: RetrievalEvalConfig) -> dict[str, Any]:
    """`clip eval-retrieval`: recall@1/5/10 both ways on one split of a captions dataset (test by default), for a
    `clip train` run (on its own split, never on images it trained on unless --split train) or an open_clip
    model. A run gets retrieval_SPLIT.json and the metrics in metrics.json; a model a results folder."""
    checked(cfg)
    run = None
    if cfg.run is not None:
        run = Run.open(cfg.run, group="clip")
        saved = run.read_config()
        if "image_encoder" not in saved:
            raise ConfigError(f"--run {cfg.run}: not a `clip train` run (zero-shot, CoOp and probe runs classify)")
        data, seed, bundle = cfg.data or saved["data"], int(saved.get("seed", 0)), build_clip(str(run.dir))
    else:
        data, seed = cfg.data or "builtin:shapes", cfg.seed
        bundle = build_clip(str(cfg.model), cfg.pretrained, cfg.seed)
    records, stats = load_caption_records(data, strict=cfg.strict)
    records, undecodable = readable_records(records, strict=cfg.strict)
    by_name = {canonical(name): part for name, part in split_records(records, seed=seed).items()}
    part = scored(run, cfg.split, {name: [r.image for r in chosen] for name, chosen in by_name.items()})
    split, chosen = part.name, [by_name[part.name][i] for i in part.keep]
    result = caption_retrieval(bundle, chosen, split, cfg.batch_size)
    result = {
        "command": "eval-retrieval",
        "model": cfg.run or cfg.model,
        "pretrained": bundle.weights,
        "data": data,
        **result,
        "skipped_items": result["skipped_items"] + undecodable + stats.get("skipped_missing_images", 0),
    }
    if run is not None:
        from dlkit.clip.models import scratch_card
        from dlkit.core.modelcard import write_card

        path = run.write_json(f"retrieval_{split}.json", result)
        run.write_metrics(
            {
                **run.read_metrics(),
                **{
                    k: v for k, v in result.items() if k.startswith(("test_", "val_") if split != "train" else "train_")
                },
            }
        )
        write_card(run.model_dir, run, scratch_card(saved["image_encoder"]))  # the card lists the new metrics
    else:
        out = open_results(cfg, "eval-retrieval")
        path = out.write_json("metrics.json", {**result, "output_dir": str(out.dir)})
    result["output"] = str(path)
    return result
