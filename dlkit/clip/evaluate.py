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

from dlkit.clip.config import ClipSource, FixClassConfig, TemplatesConfig, ZeroShotConfig
from dlkit.clip.data import LabeledImages, load_split
from dlkit.clip.features import ImageFeatures, image_features, text_features
from dlkit.clip.models import ClipBundle, build_clip
from dlkit.clip.templates import fill, read_template_file, resolve_one, resolve_templates
from dlkit.core.errors import ConfigError
from dlkit.core.run import Run
from dlkit.core.splits import split_fields


@dataclass
class Prepared:
    """What every classifying command starts from: the model, the images and their cached features."""

    bundle: ClipBundle
    images: LabeledImages
    feats: ImageFeatures

    @property
    def classes(self) -> list[str]:
        return self.images.classes


def prepare(cfg: ClipSource, split: str | None = None) -> Prepared:
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
    from dlkit.metrics import classification_report, topk_accuracy, worst_classes

    report = classification_report(labels, scores.argmax(dim=1), labels=classes)
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, min(5, len(classes))),
        "macro_precision": report["macro"]["precision"],
        "macro_recall": report["macro"]["recall"],
        "macro_f1": report["macro"]["f1"],
        "num_images": report["num_samples"],
        "num_classes": len(classes),
        "worst_classes": [{k: row[k] for k in ("class", "f1", "precision", "recall", "support")}
                          for row in worst_classes(report, n=worst)],
        "report": report,
    }


def open_results(cfg: Any, default_name: str) -> Run:
    run = Run.create("clip", cfg, default_name)
    run.write_config(cfg, command=default_name)
    return run


def write_report(run: Run, result: dict[str, Any], scores: torch.Tensor, feats: ImageFeatures,
                 classes: list[str], prefix: str = "") -> None:
    """report.csv, plots/confusion_matrix.png, plots/per_class_f1.png and samples/predictions.csv."""
    from dlkit.core import plots
    from dlkit.core.classification import write_report_csv
    from dlkit.core.plots import plot_confusion_matrix

    report = result["report"]
    write_report_csv(report, run.dir / f"{prefix}report.csv")
    plot_confusion_matrix(report["confusion_matrix"], classes, run.plots_dir / f"{prefix}confusion_matrix.png")
    rows = sorted(report["per_class"], key=lambda r: r["f1"])[:40]
    plots.bar_chart([r["class"] for r in rows], [r["f1"] for r in rows], run.plots_dir / f"{prefix}per_class_f1.png",
                    ylabel="F1", title="per-class F1 (lowest first)")
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
    templates = resolve_templates(cfg.templates)
    prep = prepare(cfg)
    run = open_results(cfg, "zeroshot")
    scores = logits(prep.feats.features, class_embeddings(prep.bundle, prep.classes, templates))
    result = score(scores, prep.feats.labels, prep.classes, cfg.worst)
    write_report(run, result, scores, prep.feats, prep.classes)
    metrics = {"command": "zeroshot", "model": cfg.model, "pretrained": prep.bundle.weights, "data": cfg.data,
               **split_fields(prep.images.split, len(prep.feats.labels)), "num_templates": len(templates),
               **summary(result),
               "skipped_items": len(prep.feats.skipped), "features_cached": prep.feats.cached,
               "output_dir": str(run.dir)}
    run.write_metrics(metrics)
    run.write_json("report.json", result["report"])
    return metrics


def templates(cfg: TemplatesConfig) -> dict[str, Any]:
    """One row per template set, all on the same image features (encoded at most once)."""
    sets = [s.strip() for s in cfg.sets.split(",") if s.strip()]
    if not sets:
        raise ConfigError("--sets needs at least one template set or file")
    resolved = {name: resolve_one(name, "--sets") for name in sets}
    prep = prepare(cfg)
    run = open_results(cfg, "templates")
    rows = []
    for name, templates in resolved.items():
        scores = logits(prep.feats.features, class_embeddings(prep.bundle, prep.classes, templates))
        result = score(scores, prep.feats.labels, prep.classes)
        rows.append({"set": Path(name).name if Path(name).is_file() else name, "templates": len(templates),
                     "top1": result["top1"], "top5": result["top5"], "macro_f1": result["macro_f1"]})
    _bar_rows(run, rows)
    metrics = {"command": "templates", "model": cfg.model, "pretrained": prep.bundle.weights, "data": cfg.data,
               **split_fields(prep.images.split, len(prep.feats.labels)), "rows": rows,
               "best": max(rows, key=lambda r: r["top1"])["set"],
               "num_images": len(prep.feats.labels), "skipped_items": len(prep.feats.skipped),
               "output_dir": str(run.dir)}
    run.write_metrics(metrics)
    return metrics


def _bar_rows(run: Run, rows: list[dict[str, Any]]) -> None:
    from dlkit.core import plots

    plots.bar_chart([r["set"] for r in rows], [r["top1"] for r in rows], run.plots_dir / "templates_top1.png",
                    ylabel="top-1 accuracy", title="template sets")


def fix_class(cfg: FixClassConfig) -> dict[str, Any]:
    """Score candidate templates for one class only: the other classes keep the --templates embedding."""
    base_templates = resolve_templates(cfg.templates)
    path = Path(cfg.candidates).expanduser()
    if not path.is_file():
        raise ConfigError(f"--candidates {cfg.candidates}: no such file")
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
        return {"template": label, "class_f1": row["f1"], "class_precision": row["precision"],
                "class_recall": row["recall"], "top1": result["top1"]}

    rows = [evaluate(base, "(baseline: --templates)")]
    for template in candidates:
        emb = base.clone()
        emb[target] = class_embeddings(bundle, [classname], [template])[0]
        rows.append(evaluate(emb, template))
    best, verdict = pick_best(rows[1:], classname)
    _write_rows_csv(run, rows)
    metrics = {"command": "fix-class", "class": classname, **split_fields(images.split, len(feats.labels)),
               "baseline": rows[0], "best": best, "verdict": verdict,
               "improved": best is not None and best["class_f1"] > rows[0]["class_f1"], "rows": rows,
               "num_images": len(feats.labels), "skipped_items": len(feats.skipped), "output_dir": str(run.dir)}
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
        return None, (f"no best template: {len(leaders)} candidates tie at F1 {top[0]:.4g} and top-1 {top[1]:.4g} "
                      f"on {classname!r}")
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


def retrieval_metrics(rows: list[tuple[torch.Tensor, torch.Tensor, int]], scale: float) -> dict[str, float]:
    """Recall@1/5/10 both ways over every val image and caption; val_loss is caption->image cross-entropy."""
    owners = torch.tensor([r[2] for r in rows])
    images: dict[int, torch.Tensor] = {}
    for image_emb, _, owner in rows:
        images.setdefault(owner, image_emb)
    image_ids = sorted(images)
    image_matrix = torch.stack([images[i] for i in image_ids])  # (I, D)
    text_matrix = torch.stack([r[1] for r in rows])  # (T, D)
    column = {image_id: j for j, image_id in enumerate(image_ids)}
    truth = torch.tensor([column[int(o)] for o in owners])  # (T,) each caption's image column
    sims = text_matrix @ image_matrix.T  # (T, I)
    out = {"val_loss": F.cross_entropy(scale * sims, truth).item()}
    t2i_rank = (sims > sims.gather(1, truth[:, None])).sum(dim=1)  # images scored above the right one
    i2t_best = torch.full((len(image_ids),), len(rows), dtype=torch.long)
    i2t_order = sims.T.argsort(dim=1, descending=True)  # (I, T)
    for j in range(len(image_ids)):
        hits = (truth[i2t_order[j]] == j).nonzero()
        i2t_best[j] = hits[0, 0] if len(hits) else len(rows)
    for k in (1, 5, 10):
        out[f"val_t2i_r{k}"] = (t2i_rank < k).float().mean().item()
        out[f"val_i2t_r{k}"] = (i2t_best < k).float().mean().item()
    out["val_mean_recall"] = sum(out[f"val_{d}_r{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)) / 6
    return out
