"""`dlkit llm reason`: how much prompting alone makes an LM reason, strategy against strategy.

Strategies (Wei et al. 2022; Kojima et al. 2022; Wang et al. 2023):
- direct: the question, then the answer prefix ("Answer:"): the model must answer in one jump;
- cot: zero-shot chain of thought, the question then the trigger ("Let's think step by step.") opening the answer;
- fewshot-cot: N worked examples as earlier chat turns (steps, then "Answer: N"), then the question;
- self-consistency: K completions of the CoT prompt (few-shot when --shots > 0) sampled at --temperature,
  and the majority vote over their extracted answers.

The model only ever sees questions it is scored on and the shots; shots taken from --data are not scored.
Every prompt and completion is written to samples/completions.jsonl.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit.core import plots
from dlkit.core.config import checked
from dlkit.core.errors import DataError
from dlkit.core.progress import info
from dlkit.core.run import Run
from dlkit.llm.config import ReasonConfig
from dlkit.metrics.answers import extract_answer, gold_answer, majority_vote

TRIGGERS = {"en": "Let's think step by step.", "fa": "بیایید گام به گام فکر کنیم."}
ANSWER_PREFIX = {"en": "Answer:", "fa": "پاسخ:"}
QUESTION_COLUMNS = ("question", "problem", "input", "Question", "Problem")
ANSWER_COLUMNS = ("answer", "solution", "output", "final_answer", "Answer")
_ARABIC_SCRIPT = re.compile(r"[\u0600-\u06FF]")
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations

# prompts, temperature, seed -> (one completion per prompt, the tokens generated for each)
Complete = Callable[[list[str], float, int], tuple[list[str], list[int]]]


@dataclass(frozen=True)
class Problem:
    question: str
    gold: str  # the normalised gold number
    solution: str  # worked steps without the final '#### N' line ('' when the data has none)


# -- data ------------------------------------------------------------------------------------------


def read_rows(spec: str, flag: str = "--data") -> tuple[list[dict], str]:
    """(rows, which split they are): a whole local file or builtin, or a Hub dataset's test split (GSM8K's
    'main' config when the dataset has one)."""
    from dlkit.core.sources import resolve
    from dlkit.llm.data import load_rows

    source = resolve(spec, "data", flag)
    if source.kind != "hub":
        return load_rows(spec, flag)[0], "all"
    from datasets import get_dataset_config_names, load_dataset

    configs = get_dataset_config_names(source.value)
    splits = load_dataset(source.value, "main" if "main" in configs else None)
    split = "test" if "test" in splits else next(iter(splits))
    rows = splits[split].to_list()
    if not rows:
        raise DataError(f"{flag} {spec}: its {split!r} split is empty")
    return rows, split


def load_problems(spec: str, flag: str = "--data") -> list[Problem]:
    """Rows with a question and a gold answer (a number, or GSM8K's 'steps #### N')."""
    return parse_problems(*read_rows(spec, flag), spec, flag)[0]


def parse_problems(rows: list[dict], split: str, spec: str, flag: str) -> tuple[list[Problem], str]:
    """Problems of the rows (the question/answer columns found by name); a row without a gold number is an error."""
    columns = set(rows[0])
    q_col = next((c for c in QUESTION_COLUMNS if c in columns), None)
    a_col = next((c for c in ANSWER_COLUMNS if c in columns), None)
    if q_col is None or a_col is None:
        raise DataError(
            f"{flag} {spec}: expected a 'question' and an 'answer' column (GSM8K layout); found: "
            f"{', '.join(sorted(columns))}"
        )
    from dlkit.llm.data import check_empty_turns

    problems, empty, first_empty = [], 0, ""
    for number, row in enumerate(rows, 1):
        question = str(row.get(q_col) or "").strip()
        if not question:  # an empty user turn
            empty += 1
            first_empty = first_empty or f"row {number}, field {q_col!r}"
            continue
        answer = str(row.get(a_col) or "")
        gold = gold_answer(answer)
        if gold is None:
            raise DataError(
                f"{flag} {spec}: row {number} has no number in its {a_col!r} ({answer[:40]!r}); "
                "expected a number or GSM8K's '... #### N'"
            )
        steps = _CALCULATOR.sub("", answer.rsplit("####", 1)[0]).strip() if "####" in answer else ""
        problems.append(Problem(question, gold, steps))
    check_empty_turns(empty, len(rows), first_empty, f"{flag} {spec}", "question")
    return problems, split


def language_of(problems: list[Problem]) -> str:
    """'fa' when most questions are in the Arabic script (Persian), else 'en'."""
    arabic = sum(bool(_ARABIC_SCRIPT.search(p.question)) for p in problems)
    return "fa" if arabic * 2 > len(problems) else "en"


# -- prompts ---------------------------------------------------------------------------------------


def shot_answer(problem: Problem, lang: str) -> str:
    """A worked example's answer turn: its steps, then the answer line the extractor looks for."""
    line = f"{ANSWER_PREFIX[lang]} {problem.gold}"
    return f"{problem.solution}\n{line}" if problem.solution else line


def build_prompt(
    tokenizer: Any, strategy: str, problem: Problem, shots: list[Problem], lang: str, trigger: str
) -> tuple[str, str]:
    """(the templated prompt, the text it ends with inside the answer: the answer prefix or the CoT trigger)."""
    from dlkit.llm.data import render

    messages: list[dict[str, str]] = []
    few_shot = strategy == "fewshot-cot" or (strategy == "self-consistency" and shots)
    if few_shot:
        for shot in shots:
            messages += [
                {"role": "user", "content": shot.question},
                {"role": "assistant", "content": shot_answer(shot, lang)},
            ]
    messages.append({"role": "user", "content": problem.question})
    if strategy == "direct":
        opening = ANSWER_PREFIX[lang] + " "
    elif few_shot:
        opening = ""  # the shots show the format
    else:
        opening = trigger + "\n"
    return render(tokenizer, messages, generation_prompt=True) + opening, opening


# -- scoring ---------------------------------------------------------------------------------------


def score_strategy(
    strategy: str,
    prompts: list[tuple[str, str]],
    problems: list[Problem],
    complete: Complete,
    samples: int,
    temperature: float,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy, mean generated tokens and seconds per question of one strategy; plus one record per question."""
    k = samples if strategy == "self-consistency" else 1
    texts = [p for p, _ in prompts]
    start = time.perf_counter()
    flat, counts = complete([t for t in texts for _ in range(k)], temperature if k > 1 else 0.0, seed)
    seconds = time.perf_counter() - start
    outputs = [flat[i * k : (i + 1) * k] for i in range(len(texts))]
    records: list[dict[str, Any]] = []
    correct, tokens = 0, sum(counts)
    for i, (problem, (prompt, opening), completions) in enumerate(zip(problems, prompts, outputs, strict=True)):
        answers = [extract_answer(opening + c) for c in completions]
        prediction = majority_vote(answers)
        correct += prediction == problem.gold
        records.append(
            {
                "strategy": strategy,
                "index": i,
                "question": problem.question,
                "gold": problem.gold,
                "prompt": prompt,
                "completions": completions,
                "answers": answers,
                "prediction": prediction,
                "correct": prediction == problem.gold,
            }
        )
    n = len(problems)
    row = {
        "strategy": strategy,
        "questions": n,
        "correct": correct,
        "accuracy": correct / n,
        "samples": k,
        "mean_generated_tokens": tokens / n,
        "seconds_per_question": seconds / n,
    }
    if k > 1:  # what one sample alone would have scored, to show what the vote adds
        row["single_sample_accuracy"] = sum(r["answers"][0] == r["gold"] for r in records) / n
    return row, records


def model_completer(
    model: Any, tokenizer: Any, max_new_tokens: int, batch_size: int, max_length: int | None = None
) -> Complete:
    import torch

    from dlkit.llm.generate import generate

    def complete(prompts: list[str], temperature: float, seed: int) -> tuple[list[str], list[int]]:
        torch.manual_seed(seed)
        counts: list[int] = []
        texts = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens,
            batch_size,
            progress=True,
            temperature=temperature,
            token_counts=counts,
            max_length=max_length,
        )
        return texts, counts

    return complete


def reason(cfg: ReasonConfig, complete: Complete | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """Score every strategy on the problems; write the table, the plot and every prompt and completion."""
    checked(cfg)
    problems, split = parse_problems(*read_rows(cfg.data), cfg.data, "--data")
    shots: list[Problem] = []
    needs_shots = cfg.shots > 0 and any(s in ("fewshot-cot", "self-consistency") for s in cfg.strategies)
    if needs_shots:
        if cfg.shots_file:
            shots = load_problems(cfg.shots_file, "--shots-file")[: cfg.shots]
        else:
            if len(problems) <= cfg.shots:
                raise DataError(
                    f"--data {cfg.data}: {len(problems)} problems cannot give {cfg.shots} shots and "
                    "leave any to score; pass --shots-file or lower --shots"
                )
            shots, problems = problems[: cfg.shots], problems[cfg.shots :]
            info(f"shots: the first {len(shots)} problems of {cfg.data} (not scored)")
    problems = problems[: cfg.limit] if cfg.limit else problems
    info(f"scoring {len(problems)} problems of {cfg.data} (split: {split})")
    lang = language_of(problems)
    trigger = cfg.trigger or TRIGGERS[lang]
    if complete is None:
        from dlkit.llm.models import trained_max_length

        model, tokenizer = _load(cfg)
        complete = model_completer(
            model, tokenizer, cfg.max_new_tokens, cfg.batch_size, trained_max_length(Path(cfg.run)) if cfg.run else None
        )

    run = Run.create("llm", cfg, "reason", command="reason")
    run.write_config(cfg, command="llm reason")
    rows, records = [], []
    for strategy in cfg.strategies:
        prompts = [build_prompt(tokenizer, strategy, p, shots, lang, trigger) for p in problems]
        row, recs = score_strategy(strategy, prompts, problems, complete, cfg.samples, cfg.temperature, cfg.seed)
        info(f"{strategy}: accuracy {row['accuracy']:.3f} ({row['correct']}/{row['questions']})")
        rows.append(row)
        records += recs
    result = {
        "data": cfg.data,
        "split": split,
        "model": cfg.run or cfg.model,
        "language": lang,
        "trigger": trigger,
        "questions": len(problems),
        "shots": len(shots),
        "strategies": rows,
    }
    _write(run, rows, records, result)
    info(f"wrote {run.dir}/reason.csv, {run.plots_dir / 'accuracy.png'} and {run.samples_dir / 'completions.jsonl'}")
    return {**result, "output_dir": str(run.dir)}


def _load(cfg: ReasonConfig) -> tuple[Any, Any]:
    from dlkit.llm.models import load_model, load_tokenizer, load_trained, resolve_model

    if cfg.run:
        model, tokenizer, _ = load_trained(Path(cfg.run))
        return model, tokenizer
    base = resolve_model(cfg.model or "builtin:tiny-llama")
    model = load_model(base)
    model.eval()
    return model, load_tokenizer(base)


def _write(run: Any, rows: list[dict], records: list[dict], result: dict) -> None:
    columns = [
        "strategy",
        "questions",
        "correct",
        "accuracy",
        "samples",
        "single_sample_accuracy",
        "mean_generated_tokens",
        "seconds_per_question",
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    run.write_text("reason.csv", buf.getvalue())
    run.write_json("reason.json", result)
    run.write_metrics(
        {
            f"{r['strategy']}_{k}": v
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and k != "questions"
        }
        | {"questions": result["questions"]}
    )
    run.write_text("samples/completions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    plots.bar_chart(
        [r["strategy"] for r in rows],
        [r["accuracy"] for r in rows],
        run.plots_dir / "accuracy.png",
        ylabel="accuracy",
        title=f"{result['model']} on {result['data']} ({result['questions']} questions)",
    )
