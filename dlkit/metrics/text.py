"""Text generation metrics: BLEU-1..4, chrF, ROUGE, BERTScore and CIDEr-D.

Every function takes one hypothesis per example and a list of references per example (the count may
vary between examples). Inputs are expected to be cleaned already; BLEU and CIDEr-D split on whitespace
only, so the caller decides tokenisation and casing.
"""

from __future__ import annotations

import math
import re
from collections import Counter


def _check_corpus(hypotheses: list[str], references: list[list[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a string; expected a list of reference strings")
        if len(refs) == 0:
            raise ValueError(f"references[{i}] is empty; every hypothesis needs at least one reference")


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-example reference lists into sacrebleu's per-reference streams.

    sacrebleu skips None entries, which is how it supports a variable number of references.
    """
    width = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def corpus_bleu(hypotheses: list[str], references: list[list[str]], max_order: int = 4) -> dict[str, float]:
    """Cumulative corpus BLEU-1..max_order in [0, 1], as reported by captioning papers.

    BLEU-n is the geometric mean of clipped 1..n-gram precisions with uniform weights times the
    brevity penalty (closest reference length, shorter on ties); no smoothing. This equals nltk's
    corpus_bleu with weights (1/n,)*n. Tokens are whitespace-separated.
    """
    from sacrebleu.metrics import BLEU

    _check_corpus(hypotheses, references)
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    bleu = BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_order, force=True)
    stats = bleu.corpus_score(hypotheses, _reference_streams(references))
    # One pass collects the clipped counts for every order; lower orders reuse them.
    return {
        f"bleu{n}": BLEU.compute_bleu(
            list(stats.counts[:n]), list(stats.totals[:n]), stats.sys_len, stats.ref_len,
            smooth_method="none", max_ngram_order=n,
        ).score / 100.0
        for n in range(1, max_order + 1)
    }


def chrf(hypotheses: list[str], references: list[list[str]], char_order: int = 6, word_order: int = 0,
         beta: int = 2) -> float:
    """Corpus chrF in [0, 1] (chrF++ with word_order=2); tolerant of tokenisation and morphology."""
    from sacrebleu.metrics import CHRF

    _check_corpus(hypotheses, references)
    metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)
    return metric.corpus_score(hypotheses, _reference_streams(references)).score / 100.0


class _UnicodeTokenizer:
    """rouge-score's default tokenizer keeps only [a-z0-9]; this keeps letters of every script."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower(), flags=re.UNICODE)


def rouge(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over examples, taking the best-scoring reference of each example.

    Uses the rouge-score package with a Unicode-aware tokenizer, so non-Latin text (e.g. Persian) is
    scored instead of being dropped.
    """
    from rouge_score.rouge_scorer import RougeScorer

    _check_corpus(hypotheses, references)
    types = ["rouge1", "rouge2", "rougeL"]
    scorer = RougeScorer(types, tokenizer=_UnicodeTokenizer())
    totals = dict.fromkeys(types, 0.0)
    for hyp, refs in zip(hypotheses, references, strict=True):
        best = scorer.score_multi(list(refs), hyp)
        for t in types:
            totals[t] += best[t].fmeasure
    return {t: totals[t] / len(hypotheses) for t in types}


def bertscore(hypotheses: list[str], references: list[list[str]], model: str, num_layers: int | None = None,
              batch_size: int = 32, device: str | None = None) -> dict[str, float]:
    """Mean BERTScore precision/recall/F1 (no IDF, no baseline rescaling).

    With several references bert-score keeps, per example, the best value of each of P, R and F1.
    `model` is a local folder or a Hub id; num_layers=None uses the model's last layer, because
    bert-score's per-model default table only knows Hub names.
    """
    import bert_score

    _check_corpus(hypotheses, references)
    if num_layers is None:
        from transformers import AutoConfig

        num_layers = int(AutoConfig.from_pretrained(model).num_hidden_layers)
    precision, recall, f1 = bert_score.score(
        list(hypotheses), [list(refs) for refs in references], model_type=model, num_layers=num_layers,
        batch_size=batch_size, device=device,
    )
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }


def _ngram_counts(text: str, n: int) -> Counter[tuple[str, ...]]:
    words = text.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d(hypotheses: list[str], references: list[list[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (Vedantam et al. 2015) exactly as pycocoevalcap computes it.

    Per n-gram order: cosine similarity of tf-idf vectors, the hypothesis weights clipped by the
    reference's, times a Gaussian penalty on the length difference; averaged over orders and
    references, times 10, averaged over images. Document frequencies come from the references of
    this corpus, so the score depends on the whole evaluation set (a one-image corpus scores 0).
    Tokens are whitespace-separated.
    """
    _check_corpus(hypotheses, references)
    hyp_counts = [_ngram_counts(h, n) for h in hypotheses]
    ref_counts = [[_ngram_counts(r, n) for r in refs] for refs in references]

    doc_freq: Counter[tuple[str, ...]] = Counter()
    for refs in ref_counts:
        doc_freq.update({g for ref in refs for g in ref})
    log_num_docs = math.log(float(len(references)))

    def tfidf(counts: Counter[tuple[str, ...]]) -> tuple[list[dict], list[float], int]:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        sq_norm = [0.0] * n
        for gram, tf in counts.items():
            weight = float(tf) * (log_num_docs - math.log(max(1.0, float(doc_freq[gram]))))
            vec[len(gram) - 1][gram] = weight
            sq_norm[len(gram) - 1] += weight * weight
        length = sum(tf for gram, tf in counts.items() if len(gram) == 1)
        return vec, [math.sqrt(s) for s in sq_norm], length

    total = 0.0
    for hyp, refs in zip(hyp_counts, ref_counts, strict=True):
        vec_h, norm_h, len_h = tfidf(hyp)
        image_score = 0.0
        for ref in refs:
            vec_r, norm_r, len_r = tfidf(ref)
            penalty = math.exp(-float(len_h - len_r) ** 2 / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                image_score += val * penalty
        total += image_score / n / len(refs) * 10.0
    return total / len(hypotheses)
