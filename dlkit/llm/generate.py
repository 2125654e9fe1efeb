"""Batched greedy generation with left padding, and the generation metrics of `llm eval`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from dlkit.core.compat import refuse_known_bad, version_at_least
from dlkit.core.lengths import bound_prompts
from dlkit.core.progress import track
from dlkit.llm.data import END_OF_TURN, generation_prompt
from dlkit.metrics import chrf, corpus_bleu, exact_match, rouge


def stop_ids(tokenizer: Any) -> list[int]:
    """eos plus every end-of-turn marker the vocabulary has (Llama-3 instruct stops at <|eot_id|>)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[m] for m in END_OF_TURN if m in vocab)
    return sorted(ids)


def _batches(lengths: list[int], batch_size: int, same_length: bool) -> list[list[int]]:
    """Indices sorted by length (little padding); with same_length, a batch never mixes lengths."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (not same_length or lengths[batches[-1][0]] == lengths[i]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# transformers 5.24 renamed the generation cache `past_key_values` -> `cache` (forward kwargs, the dict
# `prepare_inputs_for_generation` returns, model outputs). peft <= 0.21's PeftModelForCausalLM
# `prepare_inputs_for_generation` still reads `past_key_values`: it never sees the cache, so prompt/P-tuning
# re-inject the virtual tokens at every step and prefix tuning is never attended to (DESIGN.md section 7).
CACHE_RENAMED_IN = "5.24"


@contextmanager
def soft_prompt_cache_names(model: Any) -> Iterator[None]:
    """Make PEFT's prompt-learning generation see the KV cache under the name it reads.

    On transformers >= 5.24 this maps `cache` -> `past_key_values` on the way into PEFT's
    `prepare_inputs_for_generation` and back on the way out, for the duration of the block; on older
    versions it does nothing. A peft that may read `cache` itself is refused (dlkit.core.compat).
    """
    refuse_known_bad("soft-prompt-generate")
    if not version_at_least("transformers", CACHE_RENAMED_IN):
        yield
        return
    base_prepare = model.base_model_prepare_inputs_for_generation
    peft_prepare = model.prepare_inputs_for_generation  # the bound PEFT method

    def base_with_old_name(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _rename(base_prepare(*args, **kwargs), "cache", "past_key_values")

    def peft_with_new_name(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _rename(peft_prepare(*args, **kwargs), "past_key_values", "cache")

    # PeftModelForCausalLM.generate installs self.prepare_inputs_for_generation on the base model and
    # calls self.base_model_prepare_inputs_for_generation from it: instance attributes win over both.
    model.base_model_prepare_inputs_for_generation = base_with_old_name
    model.prepare_inputs_for_generation = peft_with_new_name
    try:
        yield
    finally:
        model.base_model_prepare_inputs_for_generation = base_prepare
        del model.prepare_inputs_for_generation


def _rename(kwargs: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    if old in kwargs:
        kwargs[new] = kwargs.pop(old)
    return kwargs


def prompt_budget(model: Any, max_new_tokens: int, max_length: int | None = None) -> int:
    """How many prompt tokens a model reads: the run's --max-length when it has one, and never more than leaves
    room for the answer in the model's context window."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limits = [n for n in (max_length, context - max_new_tokens if context else None) if n is not None]
    return max(1, min(limits)) if limits else 2**31 - 1


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    use_cache: bool = True,
    progress: bool = False,
    temperature: float = 0.0,
    token_counts: list[int] | None = None,
    max_length: int | None = None,
) -> list[str]:
    """Greedy answers to already-templated prompts (sampled at `temperature` when it is > 0), batched with
    left padding so every answer starts together. A prompt longer than `prompt_budget` keeps its end (said
    in one line) before any tensor is built. A `token_counts` list receives the number of tokens generated
    for each answer (up to and including its stop token).

    PEFT's prompt-learning models ignore position ids, so left padding would shift their positions: for
    them a batch only holds prompts of one length (no padding at all).
    """
    device = next(model.parameters()).device
    soft_prompt = bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))
    ids = bound_prompts(
        tokenizer(prompts, add_special_tokens=False)["input_ids"], prompt_budget(model, max_new_tokens, max_length)
    )
    batches = _batches([len(p) for p in ids], batch_size, same_length=soft_prompt)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    answers: list[str] = [""] * len(prompts)
    counts = [0] * len(prompts)
    stops = stop_ids(tokenizer)
    try:
        with soft_prompt_cache_names(model) if soft_prompt else nullcontext():
            for batch in track(batches, "generating", len(batches)) if progress else batches:
                enc = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, padding=True, return_tensors="pt").to(
                    device
                )
                out = model.generate(
                    input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"],
                    max_new_tokens=max_new_tokens,
                    use_cache=use_cache,
                    **(
                        {"do_sample": True, "temperature": temperature, "top_k": 0}
                        if temperature > 0
                        else {"do_sample": False}
                    ),
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stops,
                )
                new = out[:, enc["input_ids"].shape[1] :]
                stopped = torch.isin(new, torch.tensor(stops, dtype=new.dtype, device=new.device))
                ends = torch.where(stopped.any(1), stopped.int().argmax(1) + 1, new.shape[1])
                for i, end in zip(batch, ends.tolist(), strict=True):
                    counts[i] = end
                for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    answers[i] = text.strip()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    if token_counts is not None:
        token_counts[:] = counts
    return answers


def prompts_and_references(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> tuple[list[str], list[str]]:
    pairs = [generation_prompt(tokenizer, c) for c in conversations]
    return [p for p, _ in pairs], [r for _, r in pairs]


def exact_match_rate(predictions: list[str], references: list[str]) -> float:
    if not references:
        return 0.0
    return sum(exact_match(p, [r]) for p, r in zip(predictions, references, strict=True)) / len(references)


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match, BLEU-4, chrF and ROUGE-L (Unicode-aware) of answers against one reference each."""
    refs = [[r] for r in references]
    return {
        "exact_match": exact_match_rate(predictions, references),
        "bleu4": corpus_bleu(predictions, refs)["bleu4"],
        "chrf": chrf(predictions, refs),
        "rougeL": rouge(predictions, refs)["rougeL"],
    }
