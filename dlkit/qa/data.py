"""SQuAD-format data: read nested SQuAD v1/v2 JSON, flat JSONL/CSV rows, Hub datasets and builtin:qa-synthetic
into one list of `QAExample`s per split, checking every answer against its context on the way.

An answer whose `answer_start` is off by a few characters is moved to the nearest place where its text
occurs; one whose text is not near its offset (or whose offset lies outside the context) is dropped, and a
question left with no answer is skipped and counted. --strict refuses the data at the first of these instead.
The tokenized windows are batched here too (`WindowDataset`, `collate_windows`).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from dlkit.core.errors import DataError
from dlkit.core.sources import Source, resolve
from dlkit.core.splits import example_id

if TYPE_CHECKING:
    from dlkit.qa.windows import Window

REPAIR_WINDOW = 20  # characters searched either side of a wrong answer_start
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
DATA_SUFFIXES = (".json", ".jsonl", ".csv")
FLAT_KEYS = {"context", "question", "answers"}
# Length-preserving Persian folding, so an answer typed with Arabic yeh/kaf or a space for ZWNJ still
# matches its context character for character.
_FOLD = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9", "\u200c": " "})


@dataclass
class QAExample:
    id: str
    context: str
    question: str
    answers: list[str]  # empty: unanswerable (SQuAD v2)
    answer_starts: list[int]
    title: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class LoadReport:
    """What checking the answers found, per source."""

    questions: int = 0
    repaired: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def load_splits(spec: str, strict: bool = False, report: LoadReport | None = None) -> dict[str, list[QAExample]]:
    """Every split the source has: builtin folder, local folder/file, or Hub dataset."""
    source = resolve(spec, "data", flag="--data")
    report = report if report is not None else LoadReport()
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        return _load_folder(Path(BUILTINS[source.value].load()), spec, strict, report)
    if source.kind == "hub":
        return _load_hub(source, strict, report)
    if source.path.is_dir():
        return _load_folder(source.path, spec, strict, report)
    return {"train": read_file(source.path, strict, report)}


def read_file(path: Path, strict: bool = False, report: LoadReport | None = None) -> list[QAExample]:
    """One SQuAD JSON / JSON list / JSONL / CSV file, answers checked."""
    report = report if report is not None else LoadReport()
    rows = list(_raw_rows(path))
    return list(check_rows(rows, str(path), strict, report))


def _load_folder(folder: Path, spec: str, strict: bool, report: LoadReport) -> dict[str, list[QAExample]]:
    splits = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            found = [folder / f"{name}{suffix}" for suffix in DATA_SUFFIXES if (folder / f"{name}{suffix}").is_file()]
            if found:
                splits[split] = read_file(found[0], strict, report)
                break
    if "train" not in splits and "test" not in splits:
        raise DataError(f"--data {spec}: found no train/validation/test file (.json, .jsonl or .csv) in the folder")
    return splits


def _load_hub(source: Source, strict: bool, report: LoadReport) -> dict[str, list[QAExample]]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(source.value)
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(f"--data {source.spec}: load_dataset failed: {first}") from None
    splits = {}
    for name, rows in dataset.items():
        split = next((s for s, names in SPLIT_NAMES.items() if name in names), name)
        splits[split] = list(check_rows(rows, f"{source.spec}[{name}]", strict, report))
    return splits


def _raw_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Flat rows {id, title, context, question, answers: {text, answer_start}} from any supported file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                yield from (_csv_row(row, path, i) for i, row in enumerate(csv.DictReader(fh), start=2))
            return
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if suffix == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield _json_line(line, path, line_no)
        return
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    yield from _squad_rows(payload, path)


def _json_line(line: str, path: Path, line_no: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {line_no}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not FLAT_KEYS <= set(row):
        found = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
        raise DataError(
            f"{path} line {line_no}: not a SQuAD row; expected keys context, question, answers "
            f"(found: {found or 'none'})"
        )
    return row


def _csv_row(row: dict[str, str], path: Path, line_no: int) -> dict[str, Any]:
    keys = set(row)
    if not {"context", "question"} <= keys or not ({"answers"} <= keys or {"answer_text", "answer_start"} <= keys):
        raise DataError(
            f"{path}: not SQuAD-shaped; expected columns id, context, question and answers (JSON) or "
            f"answer_text + answer_start (found: {', '.join(sorted(k for k in keys if k))})"
        )
    out: dict[str, Any] = dict(row)
    if "answers" in row:
        try:
            out["answers"] = json.loads(row["answers"]) if row["answers"].strip() else []
        except json.JSONDecodeError:
            raise DataError(f"{path} line {line_no}: the answers column is not JSON") from None
    else:
        text, start = row["answer_text"], row["answer_start"]
        try:
            out["answers"] = {"text": [text], "answer_start": [int(start)]} if text else []
        except ValueError:
            raise DataError(f"{path} line {line_no}: answer_start {start!r} is not an integer") from None
    out.setdefault("id", f"{path.stem}-{line_no}")
    return out


def _squad_rows(payload: Any, path: Path) -> Iterator[dict[str, Any]]:
    if isinstance(payload, list) and payload and all(isinstance(r, dict) and FLAT_KEYS <= set(r) for r in payload):
        yield from payload
        return
    articles = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(articles, list) or not all(isinstance(a, dict) and "paragraphs" in a for a in articles):
        if isinstance(payload, dict):
            found = ", ".join(sorted(map(str, payload))) or "none"
        elif isinstance(payload, list) and payload and isinstance(payload[0], dict):
            found = "a list of objects with " + ", ".join(sorted(map(str, payload[0])))
        else:
            found = f"a JSON {type(payload).__name__}"
        raise DataError(
            f"{path} is not SQuAD-shaped: expected {{'data': [{{'title', 'paragraphs': [{{'context', "
            f"'qas'}}]}}]}} or rows with context, question, answers (found keys: {found})"
        )
    for a_index, article in enumerate(articles):
        for p_index, paragraph in enumerate(article["paragraphs"]):
            if not isinstance(paragraph, dict) or "context" not in paragraph or "qas" not in paragraph:
                found = ", ".join(sorted(paragraph)) if isinstance(paragraph, dict) else type(paragraph).__name__
                raise DataError(
                    f"{path}: data[{a_index}].paragraphs[{p_index}] needs 'context' and 'qas' (found keys: {found})"
                )
            for qa in paragraph["qas"]:
                yield {
                    "id": qa.get("id"),
                    "title": article.get("title", ""),
                    "context": paragraph["context"],
                    "question": qa.get("question"),
                    "answers": qa.get("answers", []),
                    "is_impossible": qa.get("is_impossible", False),
                }


def check_rows(rows: Iterable[dict[str, Any]], where: str, strict: bool, report: LoadReport) -> Iterator[QAExample]:
    """Validate rows into examples: repair near-miss offsets, skip (and count) what cannot be used."""
    for index, row in enumerate(rows):
        report.questions += 1
        qid = str(row.get("id") if row.get("id") not in (None, "") else f"{index}")
        problem = None
        context, question = row.get("context"), row.get("question")
        if not isinstance(context, str) or not context.strip():
            problem = "empty context"
        elif not isinstance(question, str) or not question.strip():
            problem = "empty question"
        if problem is None:
            assert isinstance(context, str) and isinstance(question, str)  # the checks above
            texts, starts = _answer_lists(row.get("answers"))
            kept_texts, kept_starts, problems = [], [], []
            for text, start in zip(texts, starts, strict=False):
                fixed, why = locate_answer(context, text, start)
                if fixed is None:
                    problems.append(why)
                    continue
                if fixed != start and strict:
                    raise DataError(
                        f"{where}: question {qid}: answer {text[:40]!r} is at character {fixed}, not at "
                        f"its answer_start {start} (drop --strict to repair such offsets)"
                    )
                report.repaired += fixed != start
                kept_texts.append(text)  # as written: eval compares against it after normalising
                kept_starts.append(fixed)
            if kept_texts or not texts:
                yield QAExample(qid, context, question.strip(), kept_texts, kept_starts, str(row.get("title") or ""))
                continue
            problem = problems[0]
        if strict:
            raise DataError(f"{where}: question {qid}: {problem} (drop --strict to skip and count such questions)")
        report.skip(_category(problem))


def _category(problem: str) -> str:
    """Skip reasons without the per-question details, for counting."""
    if "outside the context" in problem:
        return "answer_start outside the context"
    if "is not at answer_start" in problem:
        return "answer text not found near answer_start"
    return problem


def _answer_lists(answers: Any) -> tuple[list[str], list[int]]:
    """HF style {text: [...], answer_start: [...]} or SQuAD style [{text, answer_start}, ...]."""
    if not answers:
        return [], []
    if isinstance(answers, dict):
        texts, starts = list(answers.get("text", [])), list(answers.get("answer_start", []))
    else:
        texts = [a.get("text", "") for a in answers]
        starts = [a.get("answer_start", -1) for a in answers]
    pairs = [
        (str(t), int(s) if isinstance(s, (int, float, str)) and str(s).lstrip("-").isdigit() else -1)
        for t, s in zip(texts, starts, strict=False)
        if str(t).strip()
    ]
    return [t for t, _ in pairs], [s for _, s in pairs]


def locate_answer(context: str, text: str, start: int) -> tuple[int | None, str]:
    """The answer's true start: `start` if it matches, else the nearest match within REPAIR_WINDOW chars."""
    if start < 0 or start >= len(context):
        return None, f"answer_start {start} is outside the context ({len(context)} characters)"
    folded_context, folded_text = context.translate(_FOLD), text.translate(_FOLD)
    if folded_context[start : start + len(text)] == folded_text:
        return start, ""
    lo = max(0, start - REPAIR_WINDOW)
    candidates = []
    position = folded_context.find(folded_text, lo)
    while position != -1 and position <= start + REPAIR_WINDOW:
        candidates.append(position)
        position = folded_context.find(folded_text, position + 1)
    if candidates:
        return min(candidates, key=lambda p: abs(p - start)), ""
    return None, f"answer {text[:40]!r} is not at answer_start {start} nor within {REPAIR_WINDOW} characters of it"


def split_off_validation(
    examples: list[QAExample], fraction: float, seed: int
) -> tuple[list[QAExample], list[QAExample]]:
    """Hold out whole contexts, so no validation question shares a context with a training one."""
    contexts = sorted({e.context for e in examples})
    random.Random(seed).shuffle(contexts)
    held = set(contexts[: max(1, round(fraction * len(contexts)))])
    return [e for e in examples if e.context not in held], [e for e in examples if e.context in held]


def split_examples(
    spec: str, val_fraction: float, seed: int, strict: bool, report: LoadReport
) -> tuple[dict[str, list[QAExample]], str]:
    """train, validation (and test when the data has one) exactly as `qa train` uses them, and the rule that
    cut them in words; `qa eval` calls it with the run's settings to find its held-out questions again."""
    splits = load_splits(spec, strict, report)
    if "train" not in splits:
        raise DataError(f"--data {spec}: no train split (found: {', '.join(splits)})")
    out = {"train": splits["train"]}
    if "validation" in splits:
        out["validation"] = splits["validation"]
        rule = "train and validation as given by the data"
    else:
        out["train"], out["validation"] = split_off_validation(splits["train"], val_fraction, seed)
        rule = f"seeded: {val_fraction:.0%} of the train contexts held out for validation (seed {seed})"
    if not out["train"]:
        raise DataError(f"--data {spec}: no usable training question ({report.skipped} skipped)")
    if "test" in splits:
        out["test"] = splits["test"]
        rule += "; test as given by the data"
    return out, rule


def question_id(example: QAExample) -> str:
    """A content id: the same question about the same passage is the same example in any file."""
    return example_id(example.context, example.question)


class WindowDataset(Dataset):
    def __init__(self, windows: list[Window]):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[int, Window]:
        return index, self.windows[index]


def collate_windows(items: list[tuple[int, Window]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest window in the batch (B, T); `window_index` maps logits back to examples."""
    length = max(len(w.input_ids) for _, w in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    token_type_ids = torch.zeros((len(items), length), dtype=torch.long)
    for row, (_, window) in enumerate(items):
        n = len(window.input_ids)
        input_ids[row, :n] = torch.tensor(window.input_ids)
        attention_mask[row, :n] = 1
        if window.token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(window.token_type_ids)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "start_positions": torch.tensor([w.start_position for _, w in items]),
        "end_positions": torch.tensor([w.end_position for _, w in items]),
        "window_index": torch.tensor([i for i, _ in items]),
    }
    if items[0][1].token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch
