"""Text generation metrics: BLEU-1..4, chrF, ROUGE, BERTScore and CIDEr-D.

Every function takes one hypothesis per example and a list of references per example (the count may
vary between examples). Inputs are expected to be cleaned already; BLEU and CIDEr-D split on whitespace
only, so the caller decides tokenisation and casing.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from pathlib import Path
from typing import cast


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


def _reference_streams(references: list[list[str]]) -> list[list[str]]:
    """Transpose per-example reference lists into sacrebleu's per-reference streams.

    sacrebleu skips None entries, which is how it supports a variable number of references (its annotations
    say str only, hence the cast).
    """
    width = max(len(refs) for refs in references)
    return cast(list[list[str]], [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)])


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
            list(stats.counts[:n]),
            list(stats.totals[:n]),
            stats.sys_len,
            stats.ref_len,
            smooth_method="none",
            max_ngram_order=n,
        ).score
        / 100.0
        for n in range(1, max_order + 1)
    }


def chrf(
    hypotheses: list[str], references: list[list[str]], char_order: int = 6, word_order: int = 0, beta: int = 2
) -> float:
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


def bertscore(
    hypotheses: list[str],
    references: list[list[str]],
    model: str,
    num_layers: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    idf: bool = False,
    baseline: tuple[float, float, float] | str | Path | None = None,
) -> dict[str, float]:
    """Mean BERTScore precision/recall/F1 (Zhang et al. 2020), computed here, equal to bert-score 0.3.13.

    Each sentence is encoded once (special tokens added, truncated to the model's length); its token
    embeddings come from layer `num_layers` (None: the model's last layer) and are unit-normalised.
    Precision averages, over hypothesis tokens, the best cosine with any reference token; recall the
    other way round; F1 is their harmonic mean. Without `idf` every token weighs 1 except [CLS]/[SEP]
    (0); with it a token weighs log((M+1)/(m+1)), M references in all, m of them holding the token.
    With several references each of P, R and F1 keeps its best value. An empty hypothesis or reference
    (nothing but special tokens) scores 0, as bert-score defines it; `baseline` (P, R, F values, or
    bert-score's rescale_baseline .tsv, row `num_layers`) then rescales every score to (x - b) / (1 - b).
    `model` is a local folder or a Hub id.
    """
    import torch

    _check_corpus(hypotheses, references)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer, encoder = _bertscore_encoder(str(model), device)
    depth = int(encoder.config.num_hidden_layers)
    num_layers = depth if num_layers is None else num_layers
    if not 0 <= num_layers <= depth:
        raise ValueError(f"num_layers must be in 0..{depth} for {model}, got {num_layers}")

    pairs = [(hyp.strip(), ref.strip()) for hyp, refs in zip(hypotheses, references, strict=True) for ref in refs]
    limit = min(int(tokenizer.model_max_length), int(getattr(encoder.config, "max_position_embeddings", 512)))
    ids = {
        s: tokenizer.encode(s, add_special_tokens=True, truncation=True, max_length=limit)
        for s in {s for pair in pairs for s in pair}
    }
    special = set(tokenizer.all_special_ids)
    weight = _bertscore_weights([ids[r] for _, r in pairs], tokenizer, idf)
    embeddings = _token_embeddings(encoder, ids, tokenizer.pad_token_id or 0, num_layers, batch_size, device)

    rows = torch.zeros(len(pairs), 3, dtype=torch.float64)
    for k, (hyp, ref) in enumerate(pairs):
        if all(t in special for t in ids[hyp]) or all(t in special for t in ids[ref]):
            continue  # empty: P = R = F1 = 0
        sim = embeddings[hyp] @ embeddings[ref].T
        hyp_w = torch.tensor([weight(t) for t in ids[hyp]])
        ref_w = torch.tensor([weight(t) for t in ids[ref]])
        precision = (sim.max(dim=1).values * hyp_w / hyp_w.sum()).sum()
        recall = (sim.max(dim=0).values * ref_w / ref_w.sum()).sum()
        f1 = 2 * precision * recall / (precision + recall)
        rows[k] = torch.stack([precision, recall, torch.nan_to_num(f1, nan=0.0)]).double()

    best, start = [], 0
    for refs in references:
        best.append(rows[start : start + len(refs)].max(dim=0).values)
        start += len(refs)
    scores = torch.stack(best)
    if baseline is not None:
        b = torch.tensor(_bertscore_baseline(baseline, num_layers), dtype=torch.float64)
        scores = (scores - b) / (1 - b)
    mean = scores.mean(dim=0)
    return {"precision": float(mean[0]), "recall": float(mean[1]), "f1": float(mean[2])}


@functools.lru_cache(maxsize=1)
def _bertscore_encoder(model: str, device: str):
    """(tokenizer, encoder in eval mode on `device`); the last one is kept, as sweeps score run after run."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(model), AutoModel.from_pretrained(model).eval().to(device)


def _bertscore_weights(reference_ids: list[list[int]], tokenizer, idf: bool):
    """token id -> weight: 1 ([CLS]/[SEP] 0) without idf; idf over the references otherwise."""
    if not idf:
        zero = {tokenizer.cls_token_id, tokenizer.sep_token_id}
        return lambda token: 0.0 if token in zero else 1.0
    counts = Counter(token for ids in reference_ids for token in set(ids))
    total = len(reference_ids)
    return lambda token: math.log((total + 1) / (counts.get(token, 0) + 1))


def _token_embeddings(encoder, ids: dict[str, list[int]], pad_id: int, layer: int, batch_size: int, device: str):
    """sentence -> (tokens, dim) unit-norm embeddings from hidden layer `layer`, batched by length."""
    import torch

    order = sorted(ids, key=lambda s: len(ids[s]))
    out = {}
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            width = max(len(ids[s]) for s in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, s in enumerate(batch):
                input_ids[row, : len(ids[s])] = torch.tensor(ids[s])
                mask[row, : len(ids[s])] = 1
            hidden = (
                encoder(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
                .hidden_states[layer]
                .float()
                .cpu()
            )
            for row, s in enumerate(batch):
                emb = hidden[row, : len(ids[s])]
                out[s] = emb / emb.norm(dim=-1, keepdim=True)
    return out


def _bertscore_baseline(baseline: tuple[float, float, float] | str | Path, num_layers: int) -> list[float]:
    """(P, R, F) baselines: given, or row `num_layers` of a bert-score rescale_baseline file (LAYER,P,R,F)."""
    if isinstance(baseline, (str, Path)):
        lines = Path(baseline).read_text().split()
        header = lines[0].split(",")
        for line in lines[1:]:
            values = dict(zip(header, line.split(","), strict=True))
            if int(values["LAYER"]) == num_layers:
                return [float(values["P"]), float(values["R"]), float(values["F"])]
        raise ValueError(f"{baseline}: no baseline row for layer {num_layers}")
    if len(baseline) != 3:
        raise ValueError(f"baseline must be (P, R, F), got {baseline!r}")
    return [float(b) for b in baseline]


def _ngram_counts(text: str, n: int) -> Counter[tuple[str, ...]]:
    words = text.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


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
            penalty = math.exp(-(float(len_h - len_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
                if norm_h[k] != 0 and norm_r[k] != 0:
                    val /= norm_h[k] * norm_r[k]
                image_score += val * penalty
        total += image_score / n / len(refs) * 10.0
    return total / len(hypotheses)
