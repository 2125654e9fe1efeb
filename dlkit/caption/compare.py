"""`dlkit caption compare RUN...`: the same test images captioned by several runs, side by side.

Writes compare.md and compare.html (image, references, each run's caption and its sentence BLEU-4),
plots/compare.png (the first images) and plots/disagreements.png (where the runs' captions differ most:
1 - the mean pairwise ROUGE-L between them), and compare.json with the corpus BLEU-4 of every run.
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any

from dlkit.caption.config import CompareConfig
from dlkit.caption.data import clean_caption
from dlkit.caption.evaluate import Captioner, split_records_of
from dlkit.caption.viz import caption_grid
from dlkit.core.config import checked
from dlkit.core.errors import DataError
from dlkit.core.progress import info
from dlkit.core.run import Run
from dlkit.metrics import corpus_bleu, rouge


def run_labels(paths: list[Path]) -> list[str]:
    """Folder names, or the full paths when two runs share a name."""
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def compare(cfg: CompareConfig) -> dict[str, Any]:
    checked(cfg)
    runs = [Run.open(Path(r), group="caption") for r in cfg.runs]
    labels = run_labels([r.dir for r in runs])
    tests = [split_records_of(r, "test") for r in runs]
    shared = set.intersection(*({rec.image for rec in t} for t in tests))
    if not shared:
        raise DataError("the runs share no test image (trained on different data?); compare runs of one dataset")
    if any(len(t) != len(shared) for t in tests):
        info(f"the runs' test splits differ; comparing on the {len(shared)} test images they share")
    records = [rec for rec in tests[0] if rec.image in shared][: cfg.limit]
    refs = [[clean_caption(c) for c in rec.captions] for rec in records]
    captions: dict[str, list[str]] = {}
    for label, run in zip(labels, runs, strict=True):
        info(f"captioning {len(records)} test images with {label}")
        generated = Captioner(run).caption([rec.image for rec in records], cfg.beam_size)
        captions[label] = [clean_caption(g.text) for g in generated]

    rows: list[dict[str, Any]] = []
    for i, (rec, ref) in enumerate(zip(records, refs, strict=True)):
        per_run = {
            label: {"caption": captions[label][i], "bleu4": corpus_bleu([captions[label][i]], [ref])["bleu4"]}
            for label in labels
        }
        pairs = list(itertools.combinations(labels, 2))
        agreement = sum(rouge([captions[a][i]], [[captions[b][i]]])["rougeL"] for a, b in pairs) / len(pairs)
        rows.append({"image": rec.image, "references": ref, "runs": per_run, "disagreement": 1.0 - agreement})
    corpus = {label: corpus_bleu(captions[label], refs)["bleu4"] for label in labels}

    run = Run.create("caption", cfg, "compare", command="compare")
    run.write_config(cfg, command="caption compare")
    worst = sorted(rows, key=lambda r: -r["disagreement"])
    result = {
        "runs": dict(zip(labels, cfg.runs, strict=True)),
        "images": len(rows),
        "beam_size": cfg.beam_size,
        "split": "test",
        "bleu4": corpus,
        "most_disagreement": [r["image"] for r in worst[:5]],
        "rows": rows,
    }
    run.write_json("compare.json", result)
    run.write_text("compare.md", markdown(rows, labels, corpus))
    run.write_text("compare.html", html_page(rows, labels, corpus, run.dir))
    _grids(run, rows, worst, labels)
    info(f"wrote {run.dir}/compare.md, compare.html, plots/compare.png and plots/disagreements.png")
    return {**{k: v for k, v in result.items() if k != "rows"}, "output_dir": str(run.dir)}


def _lines(row: dict, labels: list[str]) -> list[str]:
    return [f"ref: {row['references'][0]}"] + [
        f"{label}: {row['runs'][label]['caption']} (BLEU-4 {row['runs'][label]['bleu4']:.2f})" for label in labels
    ]


def _grids(run: Run, rows: list[dict], worst: list[dict], labels: list[str]) -> None:
    caption_grid(
        [(r["image"], _lines(r, labels)) for r in rows[:5]],
        run.plots_dir / "compare.png",
        "the same test images, captioned by each run",
    )
    caption_grid(
        [(r["image"], _lines(r, labels)) for r in worst[:5]],
        run.plots_dir / "disagreements.png",
        "where the runs disagree most (1 - mean pairwise ROUGE-L)",
    )


def markdown(rows: list[dict], labels: list[str], corpus: dict[str, float]) -> str:
    cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>")  # noqa: E731
    lines = ["| run | corpus BLEU-4 |", "| --- | ---: |"] + [f"| {cell(k)} | {v:.4f} |" for k, v in corpus.items()]
    lines += [
        "",
        "| image | references | " + " | ".join(cell(label) for label in labels) + " | disagreement |",
        "| --- | --- | " + " | ".join("---" for _ in labels) + " | ---: |",
    ]
    for row in rows:
        runs = " | ".join(
            f"{cell(row['runs'][label]['caption'])} ({row['runs'][label]['bleu4']:.2f})" for label in labels
        )
        lines.append(
            f"| ![]({row['image']}) | {'<br>'.join(cell(r) for r in row['references'])} | {runs} | "
            f"{row['disagreement']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def html_page(rows: list[dict], labels: list[str], corpus: dict[str, float], folder: Path) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(label)}<br><small>corpus BLEU-4 {corpus[label]:.4f}</small></th>" for label in labels)
    body = []
    for row in rows:
        src = Path(row["image"]).resolve().as_uri()
        runs = "".join(
            f"<td>{esc(row['runs'][label]['caption'])}<br><small>BLEU-4 {row['runs'][label]['bleu4']:.2f}</small></td>"
            for label in labels
        )
        body.append(
            f'<tr><td><img src="{src}" width="160"></td><td>{"<br>".join(map(esc, row["references"]))}'
            f"</td>{runs}<td>{row['disagreement']:.2f}</td></tr>"
        )
    return (
        f'<!doctype html><meta charset="utf-8"><title>caption compare: {esc(str(folder))}</title>'
        "<style>td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font:13px sans-serif}</style>"
        f"<table><tr><th>image</th><th>references</th>{head}<th>disagreement</th></tr>{''.join(body)}</table>\n"
    )
