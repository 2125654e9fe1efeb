"""`dlkit llm eval` and `dlkit llm generate`: loss, perplexity and generation quality of a trained run (`evaluate`),
and the untuned model's answers beside the tuned one's (`generate`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dlkit.core.config import checked
from dlkit.core.engine import item_weighted_mean
from dlkit.core.errors import DataError
from dlkit.core.modelcard import write_card
from dlkit.core.progress import info
from dlkit.core.run import Run
from dlkit.core.splits import canonical, example_id, scored, split_fields, split_in_name
from dlkit.llm.config import MAX_NEW_TOKENS, EvalConfig, GenerateConfig, LlmConfig
from dlkit.llm.data import (
    IGNORE,
    build_splits,
    conversations_of,
    detect_format,
    load_rows,
    merge_system,
    pad_batch,
    render,
    supports_system,
    tokenize_conversations,
)
from dlkit.llm.generate import generate as generate_texts
from dlkit.llm.generate import prompts_and_references, text_metrics
from dlkit.llm.models import (
    card_info,
    load_model,
    load_tokenizer,
    load_trained,
    read_info,
    resolve_model,
    trained_max_length,
)
from dlkit.metrics.guard import GuardedMetrics


@torch.no_grad()
def token_loss(model: Any, tokenizer: Any, examples: list[dict], batch_size: int = 16) -> float:
    """Mean loss per labelled token (so exp() of it is the perplexity of the answers)."""
    model.eval()
    device = next(model.parameters()).device

    def losses() -> Iterator[tuple[torch.Tensor, int]]:
        for i in range(0, len(examples), batch_size):
            batch = {
                k: v.to(device) for k, v in pad_batch(examples[i : i + batch_size], tokenizer.pad_token_id).items()
            }
            yield model(**batch).loss, int((batch["labels"][:, 1:] != IGNORE).sum())

    return item_weighted_mean(losses())


def score(
    model: Any,
    tokenizer: Any,
    val_examples: list[dict],
    test_conversations: list[list[dict]],
    max_new_tokens: int,
    batch_size: int = 16,
    bertscore_model: str | None = None,
    guard: GuardedMetrics | None = None,
    max_length: int | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """val_loss/val_ppl on tokenised examples and test_* generation metrics (prompts bounded by `max_length`,
    the run's --max-length); plus the predictions. A generation metric that fails is left out and recorded in
    `guard.failed`."""
    metrics: dict[str, float] = {}
    guard = guard or GuardedMetrics()
    if val_examples:
        loss = token_loss(model, tokenizer, val_examples, batch_size)
        metrics.update({"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))})
    predictions: list[dict] = []
    if test_conversations:
        prompts, refs = prompts_and_references(tokenizer, test_conversations)
        answers = generate_texts(
            model, tokenizer, prompts, max_new_tokens, batch_size, progress=True, max_length=max_length
        )
        guard.add(
            "exact match/BLEU/chrF/ROUGE-L", lambda: {f"test_{k}": v for k, v in text_metrics(answers, refs).items()}
        )
        if bertscore_model:
            from dlkit.metrics import bertscore

            guard.add(
                "BERTScore",
                lambda: {"test_bertscore_f1": bertscore(answers, [[r] for r in refs], model=bertscore_model)["f1"]},
            )
        metrics.update(guard.values)
        predictions = [
            {"prompt": p, "prediction": a, "reference": r} for p, a, r in zip(prompts, answers, refs, strict=True)
        ]
    return metrics, predictions


def conversations_from(spec: str, tokenizer: Any, fmt: str = "auto") -> list[list[dict[str, str]]]:
    rows, _ = load_rows(spec)
    conversations = conversations_of(
        rows, detect_format(rows, fmt, f"--data {spec}"), supports_system(tokenizer), where=f"--data {spec}"
    )
    if not conversations:
        raise DataError(f"--data {spec}: no conversation with an assistant turn")
    return conversations


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Score a run on its held-out splits (val loss on validation, generation on test), on one split named
    by --split (train only when asked), or on all of --data; write eval.json and merge into metrics.json."""
    checked(cfg)
    assert cfg.run is not None  # checked: --run, or the run --method found
    data, split, limit, bertscore_model = cfg.data, cfg.split, cfg.limit, cfg.bertscore
    max_new_tokens, batch_size = cfg.max_new_tokens or MAX_NEW_TOKENS, cfg.batch_size
    run = Run.open(cfg.run, group="llm")
    trained = run.config_as(LlmConfig)  # the exact data split it was trained on
    model, tokenizer, _ = load_trained(run.dir)
    if data is None:
        splits = build_splits(trained, tokenizer)
        by_name = {"train": splits.train.conversations, "validation": splits.val.conversations, "test": splits.test}
        part = scored(run, split, {n: splits.ids_of(c) for n, c in by_name.items()})
        loss_name = "validation" if split is None and splits.val.conversations else part.name
    else:
        conversations = conversations_from(data, tokenizer)  # scored as a test set: loss and generation
        whole = canonical(split) if split else split_in_name(data)  # the file is scored whole
        by_name = {whole: conversations}
        part = scored(
            run, whole, {whole: [example_id(i, json.dumps(c, ensure_ascii=False)) for i, c in enumerate(conversations)]}
        )
        loss_name = part.name
    name = part.name
    test = [by_name[name][i] for i in part.keep]
    loss_conversations = by_name[loss_name] if loss_name != name else test
    test = test[:limit] if limit else test
    loss_examples = tokenize_conversations(tokenizer, loss_conversations, trained.max_length).examples
    if bertscore_model:
        resolve_model(bertscore_model, "--bertscore")
    guard = GuardedMetrics()
    metrics, predictions = score(
        model, tokenizer, loss_examples, test, max_new_tokens, batch_size, bertscore_model, guard, trained.max_length
    )
    loss_prefix, prefix = _prefix(loss_name), _prefix(name)
    metrics = {
        k.replace("val_", loss_prefix, 1) if k.startswith("val_") else k.replace("test_", prefix, 1): v
        for k, v in metrics.items()
    }
    result = {
        "data": data or trained.data,
        **split_fields(name, len(test), part.left_out),
        "max_new_tokens": max_new_tokens,
        f"{prefix}examples": len(test),
        **metrics,
    }
    run.write_json("eval.json", {**result, **guard.failures()})
    run.write_text(
        f"samples/{name}_predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    )
    if data is None:
        run.write_metrics({**run.read_metrics(), **metrics, f"{prefix}examples": len(test)})
        write_card(run.model_dir, run, card_info(read_info(run.model_dir)))  # the card lists the new metrics
    return result


def _prefix(split: str) -> str:
    """Metric names: val_* for the validation split (as during training), test_*, train_*."""
    return "val_" if split == "validation" else f"{split}_"


def read_prompts(prompts: list[str], prompts_file: Path | None) -> list[str]:
    items = list(prompts)
    if prompts_file is not None:
        path = Path(prompts_file).expanduser()
        if not path.is_file():
            raise DataError(f"--prompts-file {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"--prompts-file {path}: not UTF-8 text; re-save it as UTF-8") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    items.append(str(json.loads(line)["prompt"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f'{path}:{number}: expected a JSON object with a "prompt" key') from None
            else:
                items.append(line.strip())
    if not items:
        raise DataError("no prompt given; pass --prompt TEXT or --prompts-file FILE")
    return items


def generate(cfg: GenerateConfig) -> list[dict[str, str]]:
    """Answers of the untuned base model and, with a run, of the tuned model; written into the run's samples/."""
    checked(cfg)
    assert cfg.model is not None  # checked: the run's base, or the default
    run_dir, system, max_new_tokens = cfg.run, cfg.system, cfg.max_new_tokens or MAX_NEW_TOKENS
    questions = read_prompts(cfg.prompt, Path(cfg.prompts_file) if cfg.prompts_file else None)
    base = resolve_model(cfg.model)
    tokenizer = load_tokenizer(base)
    tuned, max_length = None, None
    if run_dir is not None:
        tuned, tokenizer, _ = load_trained(Path(run_dir), base_spec=cfg.model)
        max_length = trained_max_length(Path(run_dir))
    system_ok = supports_system(tokenizer)
    templated = []
    for question in questions:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        templated.append(render(tokenizer, messages if system_ok else merge_system(messages), generation_prompt=True))
    untuned = generate_texts(load_model(base), tokenizer, templated, max_new_tokens, max_length=max_length)
    rows = [{"prompt": q, "untuned": a} for q, a in zip(questions, untuned, strict=True)]
    if tuned is not None and run_dir is not None:
        for row, answer in zip(
            rows, generate_texts(tuned, tokenizer, templated, max_new_tokens, max_length=max_length), strict=True
        ):
            row["tuned"] = answer
        run = Run.open(run_dir, group="llm")
        run.write_text("samples/before_after.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        run.write_text("samples/before_after.md", _markdown(rows))
        info(f"wrote {run.samples_dir / 'before_after.md'}")
    return rows


def _markdown(rows: list[dict[str, str]]) -> str:
    cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>")  # noqa: E731
    lines = ["| prompt | untuned | tuned |", "| --- | --- | --- |"]
    lines += [f"| {cell(r['prompt'])} | {cell(r['untuned'])} | {cell(r.get('tuned', ''))} |" for r in rows]
    return "\n".join(lines) + "\n"
