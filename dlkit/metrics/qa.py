"""Extractive QA metrics: SQuAD exact match and token F1, with Persian/Arabic normalisation.

English text is normalised exactly as the official SQuAD v1.1 and v2.0 scripts do; on top of that,
spelling variants that are visually identical or near-identical in Persian (Arabic vs Persian yeh
and kaf, ZWNJ vs space, diacritics, native digits) are folded so they do not count as errors.
Corpus scores follow the v1.1 script on v1 data and the v2.0 script on v2 data (unanswerable questions):
there a gold answer that normalises to "" ("the") is dropped, and the answerable (HasAns) and
unanswerable (NoAns) questions are scored apart as well.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ZERO_WIDTH = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_DIACRITICS = "".join(chr(c) for c in range(0x064B, 0x0660)) + "\u0670\u0640"
# Arabic comma, semicolon, question mark, triple dot, percent, decimal and thousands separators,
# full stop, guillemets and ornate parentheses.
_PERSIAN_PUNCT = "\u060c\u061b\u061f\u061e\u066a\u066b\u066c\u06d4«»‹›\ufd3e\ufd3f"

_TRANSLATION = str.maketrans(
    {
        "\u064a": "\u06cc",  # Arabic yeh -> Persian yeh
        "\u0649": "\u06cc",  # alef maksura -> Persian yeh
        "\u0643": "\u06a9",  # Arabic kaf -> keheh
        **{ch: " " for ch in _ZERO_WIDTH},
        **{ch: None for ch in _DIACRITICS + _PERSIAN_PUNCT + string.punctuation},
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # Persian digits
        **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
    }
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation (lowercase, no punctuation, no a/an/the, one space) + Persian folding."""
    text = text.lower().translate(_TRANSLATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answers_or_empty(ground_truths: list[str]) -> list[str]:
    # SQuAD v2: an unanswerable question has the empty string as its only gold answer.
    return list(ground_truths) if ground_truths else [""]


def _pair_f1(prediction_tokens: list[str], truth_tokens: list[str]) -> float:
    if not prediction_tokens or not truth_tokens:
        return float(prediction_tokens == truth_tokens)
    num_same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, ground_truths: list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised ground truth; no answers means ''."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(t) for t in _answers_or_empty(ground_truths)))


def f1_score(prediction: str, ground_truths: list[str]) -> float:
    """Best token-overlap F1 over the ground truths; empty vs empty (unanswerable) scores 1.0."""
    pred_tokens = normalize_answer(prediction).split()
    return max(_pair_f1(pred_tokens, normalize_answer(t).split()) for t in _answers_or_empty(ground_truths))


def scored_answers(answers: list[str], v2: bool) -> list[str]:
    """The gold answers a prediction is scored against: the official v2.0 script drops those that normalise to
    "" (an answer "the" never matches), v1.1 keeps every non-blank one."""
    return [a for a in answers if (normalize_answer(a) if v2 else a.strip())]


def squad_scores(
    predictions: dict[str, str], references: dict[str, list[str]], v2: bool | None = None
) -> dict[str, float]:
    """Corpus EM and F1 as percentages (0-100), over every question in `references`.

    A question without a prediction scores 0, as in the official scripts. `v2` (default: whether some
    question is unanswerable, i.e. has no non-empty reference) scores as the v2.0 script does: gold answers
    that normalise to "" are dropped, and the answerable and unanswerable subsets are reported too.
    """
    if not references:
        raise ValueError("no reference questions to score")
    if v2 is None:
        v2 = any(not any(a.strip() for a in answers) for answers in references.values())
    em: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, answers in references.items():
        if isinstance(answers, str):
            raise ValueError(f"references[{qid!r}] is a string; expected a list of answers")
        if qid not in predictions:
            em[qid] = f1[qid] = 0.0
            continue
        gold = scored_answers(answers, v2)
        em[qid] = exact_match(predictions[qid], gold)
        f1[qid] = f1_score(predictions[qid], gold)

    def summary(ids: list[str]) -> tuple[float, float]:
        if not ids:
            return 0.0, 0.0
        return 100.0 * sum(em[i] for i in ids) / len(ids), 100.0 * sum(f1[i] for i in ids) / len(ids)

    result: dict[str, float] = {}
    result["exact_match"], result["f1"] = summary(list(references))
    result["total"] = len(references)
    if not v2:
        return result
    has_ans = [q for q, answers in references.items() if any(a.strip() for a in answers)]
    answerable = set(has_ans)
    no_ans = [q for q in references if q not in answerable]
    if has_ans:
        result["has_ans_exact"], result["has_ans_f1"] = summary(has_ans)
        result["has_ans_total"] = len(has_ans)
    if no_ans:
        result["no_ans_exact"], result["no_ans_f1"] = summary(no_ans)
        result["no_ans_total"] = len(no_ans)
    return result


def no_answer_share(predictions: list[str]) -> float:
    """Percentage of predictions that are the empty answer ("no answer")."""
    return 100.0 * sum(not p.strip() for p in predictions) / max(len(predictions), 1)
