"""QA metrics equal the official SQuAD v1.1 script on English and fold Persian spelling variants."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest

from dlkit.metrics import exact_match, f1_score, normalize_answer, squad_scores


# --- Reference copy of the official SQuAD v1.1 evaluate script (evaluate-v1.1.py) -----------------
def official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_exact_match_score(prediction, ground_truth):
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def official_evaluate(references, predictions):
    f1 = exact_match = total = 0
    for qid, ground_truths in references.items():
        total += 1
        if qid not in predictions:
            continue
        prediction = predictions[qid]
        exact_match += official_metric_max_over_ground_truths(official_exact_match_score, prediction, ground_truths)
        f1 += official_metric_max_over_ground_truths(official_f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ----------------------------------------------------------------------------------------------------


ENGLISH_REFERENCES = {
    "q1": ["Denver Broncos", "The Denver Broncos"],
    "q2": ["Santa Clara, California", "Levi's Stadium"],
    "q3": ["February 7, 2016"],
    "q4": ["the Normans", "Normans"],
    "q5": ["10th and 11th centuries", "in the 10th and 11th centuries"],
    "q6": ["an apple a day"],
    "q7": ["Rollo", "Duke Rollo of Normandy"],
    "q8": ["1,000 metres (3,300 ft)"],
    "q9": ["a well-known U.S. author"],
    "q10": ["Carolina Panthers"],
    "q11": ["Paris"],
}
ENGLISH_PREDICTIONS = {
    "q1": "the denver broncos.",
    "q2": "Levi's Stadium in Santa Clara",
    "q3": "7 February 2016",
    "q4": "The Normans!",
    "q5": "the 10th century",
    "q6": "apple",
    "q7": "Rollo, the Viking",
    "q8": "1000 metres",
    "q9": "well known US author",
    "q10": "Denver",
    # q11 has no prediction and must count as 0.
}


@pytest.mark.parametrize(
    "text",
    [
        "The Denver Broncos!",
        "  an   apple, a day ",
        "Levi's Stadium",
        "U.S.A. (United States)",
        "the theatre",
        "A-team",
        "Hello,World",
        "THE END.",
        "1,000 metres (3,300 ft)",
        "\tan\nanswer\t",
    ],
)
def test_normalize_answer_equals_official_on_english(text: str) -> None:
    assert normalize_answer(text) == official_normalize_answer(text)


def test_per_question_scores_equal_official() -> None:
    for qid, prediction in ENGLISH_PREDICTIONS.items():
        truths = ENGLISH_REFERENCES[qid]
        assert exact_match(prediction, truths) == float(
            official_metric_max_over_ground_truths(official_exact_match_score, prediction, truths)
        ), qid
        assert f1_score(prediction, truths) == pytest.approx(
            official_metric_max_over_ground_truths(official_f1_score, prediction, truths), abs=1e-12
        ), qid


def test_squad_scores_equal_official_evaluate() -> None:
    ours = squad_scores(ENGLISH_PREDICTIONS, ENGLISH_REFERENCES)
    expected = official_evaluate(ENGLISH_REFERENCES, ENGLISH_PREDICTIONS)
    assert ours["exact_match"] == pytest.approx(expected["exact_match"], abs=1e-9)
    assert ours["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    assert ours["total"] == 11
    # Two exact matches (q1, q4) out of 11 questions; the fixture is not trivially all-right or all-wrong.
    assert ours["exact_match"] == pytest.approx(100 * 2 / 11)
    assert 0 < ours["exact_match"] < ours["f1"] < 100
    assert "no_ans_total" not in ours


def test_f1_hand_case() -> None:
    # pred tokens: 10th century; gold tokens: 10th and 11th centuries -> 1 common, P 1/2, R 1/4, F1 1/3.
    assert f1_score("the 10th century", ["10th and 11th centuries"]) == pytest.approx(1 / 3)


def test_persian_yeh_kaf_and_zwnj_variants_match() -> None:
    persian = "کتاب‌های ایرانی"  # Persian keheh and yeh, with ZWNJ
    arabic_letters = "كتاب‌هاي ايراني"  # Arabic kaf and yeh
    with_space = "کتاب های ایرانی"
    with_maksura = "کتاب های ایرانى"
    for variant in (arabic_letters, with_space, with_maksura):
        assert exact_match(variant, [persian]) == 1.0
        assert f1_score(variant, [persian]) == 1.0
    assert normalize_answer(persian) == "کتاب های ایرانی"
    assert exact_match("کتاب", [persian]) == 0.0


def test_persian_diacritics_tatweel_punctuation_and_digits_ignored() -> None:
    assert exact_match("مُحَمَّد", ["محمد"]) == 1.0
    assert exact_match("تهـــران", ["تهران"]) == 1.0
    assert exact_match("«تهران»، ایران؟", ["تهران ایران"]) == 1.0
    assert normalize_answer("سال ۱۴۰۲ و ٢٠٢٣") == "سال 1402 و 2023"
    assert exact_match("۱۹۷۹", ["1979"]) == 1.0
    assert normalize_answer("\u0627\u0644\u0652\u0642\u064f\u0631\u0652\u0622\u0646") == "القرآن"


def test_unanswerable_questions_follow_squad_v2() -> None:
    assert exact_match("", []) == 1.0
    assert f1_score("", []) == 1.0
    assert f1_score("something", []) == 0.0
    assert f1_score("", ["an answer"]) == 0.0

    references = {"a": ["Paris"], "b": ["Denver Broncos"], "c": [], "d": [""]}
    predictions = {"a": "Paris", "b": "Broncos", "c": "", "d": "London"}
    scores = squad_scores(predictions, references)
    assert scores["total"] == 4
    assert scores["has_ans_total"] == 2 and scores["no_ans_total"] == 2
    assert scores["has_ans_exact"] == pytest.approx(50.0)
    assert scores["has_ans_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["no_ans_exact"] == pytest.approx(50.0)
    assert scores["no_ans_f1"] == pytest.approx(50.0)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)


def test_squad_scores_rejects_empty_references() -> None:
    with pytest.raises(ValueError):
        squad_scores({"a": "x"}, {})


# --- Reference copy of the official SQuAD v2.0 evaluate script (evaluate-v2.0.py), without na_prob ---------
def official_v2_get_tokens(s):
    return official_normalize_answer(s).split() if s else []


def official_v2_compute_exact(a_gold, a_pred):
    return int(official_normalize_answer(a_gold) == official_normalize_answer(a_pred))


def official_v2_compute_f1(a_gold, a_pred):
    gold_toks = official_v2_get_tokens(a_gold)
    pred_toks = official_v2_get_tokens(a_pred)
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_v2_evaluate(references, predictions):
    exact_scores, f1_scores = {}, {}
    for qid, answers in references.items():
        gold_answers = [a for a in answers if official_normalize_answer(a)]
        if not gold_answers:
            gold_answers = [""]
        exact_scores[qid] = max(official_v2_compute_exact(a, predictions[qid]) for a in gold_answers)
        f1_scores[qid] = max(official_v2_compute_f1(a, predictions[qid]) for a in gold_answers)

    def make_eval_dict(qids):
        return {
            "exact": 100.0 * sum(exact_scores[k] for k in qids) / len(qids),
            "f1": 100.0 * sum(f1_scores[k] for k in qids) / len(qids),
            "total": len(qids),
        }

    out = make_eval_dict(list(references))
    has_ans = [k for k, v in references.items() if v]
    no_ans = [k for k, v in references.items() if not v]
    if has_ans:
        out.update({f"HasAns_{k}": v for k, v in make_eval_dict(has_ans).items()})
    if no_ans:
        out.update({f"NoAns_{k}": v for k, v in make_eval_dict(no_ans).items()})
    return out


# ----------------------------------------------------------------------------------------------------


V2_REFERENCES = {
    **ENGLISH_REFERENCES,
    "q11": ["Paris"],
    "n1": [],
    "n2": [],
    "t1": ["the", "Paris"],
    "t2": ["The"],
    "t3": ["an", "a Rome"],
}
V2_PREDICTIONS = {**ENGLISH_PREDICTIONS, "q11": "", "n1": "", "n2": "Lima", "t1": "", "t2": "", "t3": "the"}


def test_squad_v2_scores_equal_the_official_v2_script():
    ours = squad_scores(V2_PREDICTIONS, V2_REFERENCES)
    official = official_v2_evaluate(V2_REFERENCES, V2_PREDICTIONS)
    for key, official_key in [
        ("exact_match", "exact"),
        ("f1", "f1"),
        ("total", "total"),
        ("has_ans_exact", "HasAns_exact"),
        ("has_ans_f1", "HasAns_f1"),
        ("has_ans_total", "HasAns_total"),
        ("no_ans_exact", "NoAns_exact"),
        ("no_ans_f1", "NoAns_f1"),
        ("no_ans_total", "NoAns_total"),
    ]:
        assert ours[key] == pytest.approx(official[official_key], abs=1e-9), key


def test_a_gold_answer_that_normalises_to_nothing_follows_the_script_of_the_data():
    # v2 data (the official v2.0 script) drops "the"; v1.1 keeps it, and "" then matches it
    assert squad_scores({"a": ""}, {"a": ["the", "Paris"]}, v2=True)["exact_match"] == 0.0
    assert squad_scores({"a": ""}, {"a": ["the", "Paris"]}, v2=False)["exact_match"] == 100.0
    assert official_evaluate({"a": ["the", "Paris"]}, {"a": ""})["exact_match"] == 100.0
    assert official_v2_evaluate({"a": ["the", "Paris"]}, {"a": ""})["exact"] == 0.0
    # an unanswerable question makes the data v2
    assert squad_scores({"a": "", "b": ""}, {"a": ["the", "Paris"], "b": []})["exact_match"] == 50.0
