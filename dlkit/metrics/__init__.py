"""Pure metric functions shared by every task group.

Importing this package is cheap: the heavy libraries (torch, sacrebleu, rouge-score, bert-score,
matplotlib) are imported inside the functions that need them.
"""

from dlkit.metrics.classification import (
    classification_report,
    topk_accuracy,
    worst_classes,
)
from dlkit.metrics.qa import exact_match, f1_score, normalize_answer, squad_scores
from dlkit.metrics.text import bertscore, chrf, cider_d, corpus_bleu, rouge

__all__ = [
    "bertscore",
    "chrf",
    "cider_d",
    "classification_report",
    "corpus_bleu",
    "exact_match",
    "f1_score",
    "normalize_answer",
    "rouge",
    "squad_scores",
    "topk_accuracy",
    "worst_classes",
]
