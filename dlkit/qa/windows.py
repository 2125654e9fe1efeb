"""Sliding windows over long contexts, and reading the best answer span back out of them.

A question + context pair longer than --max-length becomes several windows that overlap by --doc-stride
tokens (the fast tokenizer's `return_overflowing_tokens`). Each window keeps the character offsets of its
context tokens, so a span predicted in any window maps back to the exact text of the original context.
Training labels point at the answer's tokens in the windows that contain the whole answer, and at [CLS]
in the others (and for unanswerable questions).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dlkit.core.errors import ConfigError
from dlkit.qa.config import WindowConfig
from dlkit.qa.data import QAExample

TOKENIZE_CHUNK = 256


@dataclass
class Window:
    """One model input: question + a slice of the context."""

    example_index: int
    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: list[tuple[int, int] | None]  # character span of each context token; None elsewhere
    cls_index: int
    start_position: int  # label: the answer's first token, or cls_index
    end_position: int


def check_fast_tokenizer(tokenizer: Any, spec: str) -> None:
    """Windows and span decoding need character offsets, which only fast (Rust) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"--model {spec}: {type(tokenizer).__name__} is a slow tokenizer without offset mapping; "
            "extractive QA needs a fast tokenizer (a tokenizer.json in the model folder)"
        )


def make_windows(tokenizer: Any, examples: list[QAExample], cfg: WindowConfig) -> list[Window]:
    """All windows of all examples, in example order, with start/end labels."""
    windows: list[Window] = []
    for first in range(0, len(examples), TOKENIZE_CHUNK):
        chunk = examples[first : first + TOKENIZE_CHUNK]
        encoded = _encode(tokenizer, chunk, cfg)
        for i, input_ids in enumerate(encoded["input_ids"]):
            example_index = first + encoded["overflow_to_sample_mapping"][i]
            sequence_ids = encoded.sequence_ids(i)
            offsets = [tuple(o) if sequence_ids[k] == 1 else None for k, o in enumerate(encoded["offset_mapping"][i])]
            cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
            start, end = _label(examples[example_index], offsets, cls_index)
            type_ids = encoded["token_type_ids"][i] if "token_type_ids" in encoded else None
            windows.append(Window(example_index, input_ids, type_ids, offsets, cls_index, start, end))
    return windows


def _encode(tokenizer: Any, chunk: list[QAExample], cfg: WindowConfig) -> Any:
    questions = [e.question.lstrip() for e in chunk]
    _check_room(tokenizer, chunk, questions, cfg)
    return tokenizer(
        questions,
        [e.context for e in chunk],
        truncation="only_second",
        max_length=cfg.max_length,
        stride=cfg.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _check_room(tokenizer: Any, chunk: list[QAExample], questions: list[str], cfg: WindowConfig) -> None:
    """Each window must hold more context tokens than the overlap, or the tokenizer aborts the process."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    for example, length in zip(chunk, lengths, strict=True):
        room = cfg.max_length - length - specials
        if room <= cfg.doc_stride:
            raise ConfigError(
                f"question {example.id} takes {length} tokens, leaving {max(room, 0)} of --max-length "
                f"{cfg.max_length} for the context, not more than --doc-stride {cfg.doc_stride}; "
                "raise --max-length or lower --doc-stride"
            )


def _label(example: QAExample, offsets: list[tuple[int, int] | None], cls_index: int) -> tuple[int, int]:
    """Token positions of the (first) answer if this window holds all of it, else (cls, cls)."""
    if not example.answerable:
        return cls_index, cls_index
    start_char = example.answer_starts[0]
    end_char = start_char + len(example.answers[0])
    context = {k: o for k, o in enumerate(offsets) if o is not None}  # the window's context tokens, in a row
    if not context:
        return cls_index, cls_index
    first, last = min(context), max(context)
    if context[first][0] > start_char or context[last][1] < end_char:
        return cls_index, cls_index
    start = first
    while start <= last and context[start][1] <= start_char:
        start += 1
    end = last
    while end >= first and context[end][0] >= end_char:
        end -= 1
    return start, end


@dataclass
class Span:
    text: str
    score: float  # start logit + end logit
    start_char: int
    end_char: int
    probability: float = 0.0  # softmax over the n-best candidates (and the null answer)


def best_spans(
    examples: list[QAExample],
    windows: list[Window],
    start_logits: list[list[float]],
    end_logits: list[list[float]],
    cfg: WindowConfig,
    allow_null: bool,
    top_k: int = 1,
) -> dict[str, list[Span]]:
    """Per question, the top spans over all its windows (SQuAD post-processing).

    In each window the n-best start and end tokens are paired; pairs outside the context, reversed, or
    longer than --max-answer-length are dropped; the score is start + end logit. With `allow_null`
    (SQuAD v2), the empty answer wins when the best [CLS] score beats every span.
    """
    by_example: dict[int, list[int]] = defaultdict(list)
    for w_index, window in enumerate(windows):
        by_example[window.example_index].append(w_index)
    results: dict[str, list[Span]] = {}
    for e_index, example in enumerate(examples):
        candidates: list[Span] = []
        null_score = math.inf
        for w_index in by_example.get(e_index, []):
            window, starts, ends = windows[w_index], start_logits[w_index], end_logits[w_index]
            null_score = min(null_score, starts[window.cls_index] + ends[window.cls_index])
            candidates.extend(_window_spans(example.context, window, starts, ends, cfg))
        if allow_null and null_score < math.inf:
            candidates.append(Span("", null_score, -1, -1))
        candidates = _unique(sorted(candidates, key=lambda s: s.score, reverse=True))
        if not candidates:
            candidates = [Span("", 0.0, -1, -1)]
        _probabilities(candidates)
        results[example.id] = candidates[:top_k]
    return results


def _window_spans(
    context: str, window: Window, starts: list[float], ends: list[float], cfg: WindowConfig
) -> list[Span]:
    length = len(window.offsets)
    start_ids = sorted(range(length), key=lambda k: starts[k], reverse=True)[: cfg.n_best]
    end_ids = sorted(range(length), key=lambda k: ends[k], reverse=True)[: cfg.n_best]
    spans = []
    for s in start_ids:
        first = window.offsets[s]
        if first is None:
            continue
        for e in end_ids:
            last = window.offsets[e]
            if last is None or e < s or e - s + 1 > cfg.max_answer_length:
                continue
            start_char, end_char = first[0], last[1]
            spans.append(Span(context[start_char:end_char], starts[s] + ends[e], start_char, end_char))
    return spans


def _unique(candidates: list[Span]) -> list[Span]:
    """Overlapping windows propose the same span twice; keep its best score."""
    seen, out = set(), []
    for candidate in candidates:
        key = (candidate.start_char, candidate.end_char)
        if key not in seen:
            seen.add(key)
            out.append(candidate)
    return out


def _probabilities(candidates: list[Span]) -> None:
    top = max(c.score for c in candidates)
    weights = [math.exp(c.score - top) for c in candidates]
    total = sum(weights)
    for candidate, weight in zip(candidates, weights, strict=True):
        candidate.probability = weight / total
