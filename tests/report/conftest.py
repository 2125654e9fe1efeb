"""Run folders for the report tests: tiny real trainings (the engine's builtin regression task) labelled
with group names no installed group uses, so they get the generic sections, plus the kind of files
the groups write next to them (figures, per-class CSV, Persian samples, eval.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_helpers import PERSIAN_ANSWER, PERSIAN_QUESTION, regression_run

from dlkit.classify.classifier import write_report_csv
from dlkit.core.plots import bar_chart, plot_confusion_matrix
from dlkit.metrics import classification_report


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/alpha/{slow,fast} and runs/beta/probe, with group-style figures, tables and samples."""
    root = tmp_path_factory.mktemp("runs")
    regression_run(root, "alpha", "slow", 1e-3)
    fast = regression_run(root, "alpha", "fast", 3e-2)
    probe = regression_run(root, "beta", "probe", 1e-2)

    bar_chart(["encoder", "adapter"], [900, 120], fast / "plots" / "params.png", "parameters", "trainable parameters")
    (fast / "samples").mkdir()
    (fast / "samples" / "step_0000003.md").write_text(
        f"# samples at step 3\n\n**question:** {PERSIAN_QUESTION}\n\n**answer:** {PERSIAN_ANSWER}\n\n---\n",
        encoding="utf-8",
    )
    (fast / "samples" / "before_after.md").write_text("the same answers as before_after.jsonl\n")
    (fast / "data").mkdir()  # a prepared-data copy and a vocabulary: not report material
    (fast / "data" / "prepared.json").write_text(json.dumps({"records": [{"text": "prepared row"}]}))
    (fast / "samples" / "vocab.json").write_text(json.dumps({"stoi": {"vocabulary entry": 0}}))
    with open(fast / "samples" / "before_after.jsonl", "w", encoding="utf-8") as fh:
        for prompt, before, after in [("What is 2+2?", "2+2 is 5", "4"), (PERSIAN_QUESTION, "Paris", PERSIAN_ANSWER)]:
            fh.write(json.dumps({"prompt": prompt, "before": before, "after": after}, ensure_ascii=False) + "\n")
    (fast / "eval.json").write_text(json.dumps({"test_loss": 1.25, "test_bleu4": 0.3125}))

    labels = ["circle", "square", "triangle"]
    report = classification_report([0, 1, 2, 2, 1, 0, 2, 1, 0], [0, 1, 2, 1, 1, 0, 0, 2, 0], labels=labels)
    (probe / "eval").mkdir()
    write_report_csv(report, probe / "eval" / "per_class.csv")
    plot_confusion_matrix(report["confusion_matrix"], labels, probe / "plots" / "confusion_matrix.png")
    from PIL import Image

    (probe / "samples").mkdir()
    Image.new("RGB", (24, 16), (200, 40, 40)).save(probe / "samples" / "grid.png")
    (probe / "samples" / "generations.txt").write_text("a red circle\na blue square\n", encoding="utf-8")
    dataset = root / "dataset"  # images outside the run, named by absolute path as eval commands write them
    dataset.mkdir()
    Image.new("RGB", (28, 28), (20, 20, 220)).save(dataset / "square_1.jpg")
    Image.new("L", (32, 20), 128).save(dataset / "triangle_4.png")
    (probe / "samples" / "misclassified.csv").write_text(
        "image,true,predicted,confidence\n"
        f"{dataset / 'square_1.jpg'},square,circle,0.61\n"
        f"{dataset / 'missing.png'},circle,triangle,0.55\n"
        f"{dataset / 'triangle_4.png'},triangle,square,0.52\n",
        encoding="utf-8",
    )
    with open(probe / "samples" / "captions.jsonl", "w", encoding="utf-8") as fh:  # relative to the run folder
        fh.write(
            json.dumps(
                {
                    "image": "samples/grid.png",
                    "generated": "a red rectangle",
                    "references": ["a red box", "a rectangle"],
                }
            )
            + "\n"
        )
    return root
