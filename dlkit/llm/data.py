"""Conversations in, training examples out: reading rows, detecting their format, applying the model's
chat template and labelling only what the assistant says.

Labels are found by rendering the conversation prefix by prefix with the template itself: the text
between "everything before this assistant turn + the generation prompt" and "the same plus this turn"
is the assistant's answer and its end-of-turn marker. Token offsets then map those character spans onto
tokens, so the result holds for any template that renders prefixes as prefixes (Llama-3, Gemma, ChatML).

Collation lives here too: padded batches, packed rows (position ids restart per conversation) and the
length-grouped batch plan.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlkit.builtin import BUILTINS
from dlkit.core.errors import DataError
from dlkit.core.lengths import keep_end
from dlkit.core.progress import warn
from dlkit.core.splits import DataSplits, example_id

IGNORE = -100
ROLE_ALIASES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
}
END_OF_TURN = ("<|eot_id|>", "<end_of_turn>", "<|im_end|>", "<|end|>", "</s>")
MEGABATCH = 50  # batches sorted by length together: larger = less padding, less random order
FORMAT_COLUMNS = {"sharegpt": ("conversations",), "openai": ("messages",), "alpaca": ("instruction", "output")}
EMPTY_TURN_LIMIT = 0.05  # a file with more rows than this share with an empty user/assistant turn was misread


# -- reading rows ------------------------------------------------------------------------------


def load_rows(spec: str, flag: str = "--data", limit: int | None = None) -> tuple[list[dict], int]:
    """Rows of a builtin, a local JSON/JSONL/CSV/parquet file or a Hub dataset; (rows, unreadable lines)."""
    from dlkit.core.sources import resolve

    source = resolve(spec, "data", flag)
    skipped = 0
    if source.kind == "builtin":
        rows = BUILTINS[source.value].load()
    elif source.kind == "hub":
        from datasets import load_dataset

        rows = load_dataset(source.value, split="train").to_list()
    else:
        rows, skipped = read_file(source.path)
    rows = expand_instances(rows)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{flag} {spec}: no rows")
    return rows, skipped


def expand_instances(rows: list[dict]) -> list[dict]:
    """Self-instruct / Natural-Instructions tasks (a nested `instances` list, each item with its `input` and
    `output`) as one alpaca row per instance; other rows pass through unchanged. An instance's own
    `instruction` wins over the task's `instruction` or `definition` (the public Persian self-instruct files
    put it only there)."""
    out: list[dict] = []
    for row in rows:
        keys = {str(k).lower(): k for k in row}
        instances = row.get(keys.get("instances", ""))
        if not isinstance(instances, list):
            out.append(row)
            continue
        task_instruction = _text(row.get(keys.get("instruction", ""), row.get(keys.get("definition", ""), "")))
        for instance in instances:
            if not isinstance(instance, dict):
                continue
            output = instance.get("output", "")
            output = output[0] if isinstance(output, list) and output else output
            own = _text(instance.get("instruction") or "")
            out.append(
                {
                    "instruction": own if own.strip() else task_instruction,
                    "input": str(instance.get("input") or ""),
                    "output": str(output or ""),
                }
            )
    return out


def _text(value: Any) -> str:
    """A text field that some task files give as a list of strings (Natural-Instructions' `definition`)."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def read_file(path: Path) -> tuple[list[dict], int]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json", ".csv", ".parquet"))
        if len(files) > 1 and all(p.suffix == ".json" for p in files):  # one task per file (self-instruct)
            parts = [read_file(p) for p in files]
            return [r for rows, _ in parts for r in rows], sum(bad for _, bad in parts)
        if len(files) != 1:
            raise DataError(f"{path}: expected one .jsonl/.json/.csv/.parquet file in the folder, found {len(files)}")
        path = files[0]
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist(), 0
        except Exception as exc:
            raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if path.suffix == ".csv":
        return _read_csv(text), 0
    if path.suffix == ".jsonl":
        return _read_jsonl(text, path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if path.suffix == ".json":
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        return _read_jsonl(text, path)
    if isinstance(data, dict) and any(str(k).lower() == "instances" for k in data):
        data = [data]  # one self-instruct task: expanded into its instances by load_rows
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{path}: expected a list of rows (or an object holding one list), got an object with "
                f"keys {', '.join(map(str, data))}"
            )
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a list of JSON objects")
    return data, 0


def _read_jsonl(text: str, path: Path) -> tuple[list[dict], int]:
    """Rows of a JSONL file; an unreadable line is skipped, counted and reported in one warning line."""
    rows, bad, first = [], 0, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = "" if isinstance(row, dict) else f"a JSON {type(row).__name__}, not an object"
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON ({exc.msg})"
        if problem:
            bad += 1
            first = first or f"line {number}: {problem}"
            continue
        rows.append(row)
    if bad:
        warn(f"{path}: skipped {bad} unreadable line{'s' if bad > 1 else ''} (first: {first})")
    return rows, bad


def _read_csv(text: str) -> list[dict]:
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        parsed = {}
        for key, value in row.items():
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            parsed[key] = value
        rows.append(parsed)
    return rows


# -- formats -----------------------------------------------------------------------------------


def detect_format(rows: list[dict], forced: str = "auto", where: str = "--data") -> str:
    columns = set(rows[0])
    if forced != "auto":
        needed = FORMAT_COLUMNS[forced]
        if not set(needed) <= columns and not (forced == "openai" and "message" in columns):
            raise DataError(
                f"{where}: --format {forced} needs the column(s) {', '.join(needed)}; "
                f"found: {', '.join(sorted(columns))}"
            )
        return forced
    for name, needed in FORMAT_COLUMNS.items():
        if set(needed) <= columns:
            return name
    if "message" in columns:  # universitytehran/SlimOrca (Persian) names its OpenAI-style column "message"
        return "openai"
    raise DataError(
        f"{where}: missing columns: expected 'conversations' (ShareGPT), 'messages' (OpenAI) or "
        f"'instruction'+'output' (alpaca); found: {', '.join(sorted(columns)) or 'none'}"
    )


def to_messages(row: dict, fmt: str) -> list[dict[str, str]]:
    """One row as [{"role": system|user|assistant, "content": str}]; raises ValueError on a malformed row."""
    if fmt == "alpaca":
        prompt = str(row["instruction"]).strip()
        extra = str(row.get("input") or "").strip()
        messages = [
            {"role": "user", "content": f"{prompt}\n\n{extra}" if extra else prompt},
            {"role": "assistant", "content": str(row["output"])},
        ]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": str(row["system"])})
        return messages
    turns = row["conversations"] if fmt == "sharegpt" else row.get("messages", row.get("message"))
    if isinstance(turns, str):
        turns = json.loads(turns)
    messages = []
    for turn in turns or []:  # a row without turns gives no conversation
        role = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        content = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        if role is None or content is None or str(role).lower() not in ROLE_ALIASES:
            raise ValueError(f"unreadable turn {turn!r}")
        messages.append({"role": ROLE_ALIASES[str(role).lower()], "content": str(content)})
    return messages


def merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates without a system role (Gemma): the system text opens the first user turn."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"].strip(), messages[1:]
    if rest and rest[0]["role"] == "user":
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


# -- templates and labels --------------------------------------------------------------------------


def supports_system(tokenizer: Any) -> bool:
    try:
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], tokenize=False
        )
    except Exception:
        return False
    return True


def render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant answer + its end-of-turn marker."""
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and full.startswith(through)):
            raise DataError(
                "the chat template does not render conversation prefixes as prefixes; "
                "assistant tokens cannot be located"
            )
        turn = through[len(before) :]
        end = _end_of_turn(turn, tokenizer)
        spans.append((len(before), len(before) + end))
    return full, spans


def _end_of_turn(turn: str, tokenizer: Any) -> int:
    """Where the assistant turn ends, its end-of-turn marker included (trailing newlines are not trained)."""
    markers = [m for m in (*END_OF_TURN, tokenizer.eos_token) if m]
    found = [(turn.find(m), m) for m in markers if turn.find(m) >= 0]
    if found:
        index, marker = min(found)
        return index + len(marker)
    return len(turn.rstrip())


def encode(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with labels = IGNORE everywhere except the assistant spans."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = enc["input_ids"], []
    for token_id, (start, end) in zip(ids, enc["offset_mapping"], strict=True):
        inside = any(s <= start < e for s, e in spans) and end > start
        labels.append(token_id if inside else IGNORE)
    return ids, labels


def generation_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, str]:
    """(prompt text up to the last assistant turn, that turn's reference answer)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return render(tokenizer, messages[:last], generation_prompt=True), messages[last]["content"].strip()


# -- building the dataset ---------------------------------------------------------------------------


@dataclass
class Prepared:
    """Tokenised examples plus what happened to every row."""

    examples: list[dict[str, Any]]
    conversations: list[list[dict[str, str]]]
    counts: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)  # before truncation


def conversations_of(
    rows: list[dict],
    fmt: str,
    system_ok: bool,
    strict: bool = False,
    counts: Counter | None = None,
    where: str = "--data",
) -> list[list[dict[str, str]]]:
    """Rows as message lists; rows without an assistant turn, with an empty user or assistant turn, or
    unreadable are skipped and counted. More than EMPTY_TURN_LIMIT of the rows with an empty turn is an error
    (the file was read with the wrong fields)."""
    counts = counts if counts is not None else Counter()
    out = []
    first_empty = ""
    for index, row in enumerate(rows):
        try:
            messages = to_messages(row, fmt)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if strict:
                raise DataError(f"row {index}: {exc}") from None
            counts["malformed"] += 1
            continue
        if not any(m["role"] == "assistant" for m in messages):
            counts["no_assistant_turn"] += 1
            continue
        empty = next(
            (i for i, m in enumerate(messages) if m["role"] in ("user", "assistant") and not m["content"].strip()), None
        )
        if empty is not None:
            location = f"row {index + 1}, {turn_field(fmt, messages, empty)}"
            if strict:
                raise DataError(f"{where}: {location}: the {messages[empty]['role']} turn is empty")
            counts["empty_turn"] += 1
            first_empty = first_empty or location
            continue
        if not system_ok and messages[0]["role"] == "system":
            messages = merge_system(messages)
            counts["system_merged"] += 1
        out.append(messages)
    check_empty_turns(counts["empty_turn"], len(rows), first_empty, where, "user or assistant turn")
    return out


def turn_field(fmt: str, messages: list[dict[str, str]], index: int) -> str:
    """The field of the row that an empty turn came from, as a user would look for it in the file."""
    if fmt == "alpaca":
        return "field 'output'" if messages[index]["role"] == "assistant" else "fields 'instruction' and 'input'"
    if fmt == "sharegpt":
        return f"field 'conversations[{index}].value'"
    return f"field 'messages[{index}].content'"


def check_empty_turns(empty: int, total: int, first: str, where: str, what: str) -> None:
    """Refuse a source where more than EMPTY_TURN_LIMIT of the rows have an empty turn; otherwise say how many
    were skipped."""
    if not empty:
        return
    share = empty / max(total, 1)
    if share > EMPTY_TURN_LIMIT:
        raise DataError(
            f"{where}: {empty} of {total} rows ({share:.0%}) have an empty {what} (first: {first}); "
            f"more than {EMPTY_TURN_LIMIT:.0%} means the rows are read with the wrong fields: check "
            "--format and the file's layout"
        )

    warn(f"{where}: skipped {empty} of {total} rows with an empty {what} (first: {first})")


def tokenize_conversations(
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_length: int,
    drop_long: bool = False,
    counts: Counter | None = None,
    strict: bool = False,
) -> Prepared:
    counts = counts if counts is not None else Counter()
    prepared = Prepared([], [], counts)
    for index, messages in enumerate(conversations):
        try:
            ids, labels = encode(tokenizer, messages)
        except DataError:
            raise
        except Exception as exc:  # the template refused this conversation (e.g. roles not alternating)
            if strict:
                raise DataError(f"conversation {index}: the chat template refused it ({exc})") from None
            counts["malformed"] += 1
            continue
        prepared.lengths.append(len(ids))
        if len(ids) > max_length:
            if drop_long:
                counts["dropped_long"] += 1
                continue
            ids, labels = fit_length(ids, labels, max_length)
            counts["truncated"] += 1
        if all(label == IGNORE for label in labels):
            counts["dropped_long"] += 1  # truncation cut every answer token
            continue
        prepared.examples.append({"input_ids": ids, "labels": labels})
        prepared.conversations.append(messages)
    return prepared


def fit_length(ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """A conversation cut to `max_length` tokens. When its last answer fits, the prompt before it keeps its end
    (the question being answered) and loses its beginning, as a generation prompt does; an answer longer than
    that alone is cut at its end."""
    start = len(labels)  # the first token of the last answer
    while start > 0 and labels[start - 1] == IGNORE:
        start -= 1
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    if len(ids) - start < max_length:
        return keep_end(ids, max_length), keep_end(labels, max_length)
    return ids[:max_length], labels[:max_length]


def split(items: list, val_size: float, test_size: float, seed: int) -> tuple[list, list, list]:
    """Seeded (train, val, test); a size < 1 is a fraction, else a count."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n = len(items)
    n_val = int(round(val_size * n)) if val_size < 1 else int(val_size)
    n_test = int(round(test_size * n)) if test_size < 1 else int(test_size)
    if n_val + n_test >= n:
        raise DataError(
            f"{n} conversations cannot fill a val split of {n_val} and a test split of {n_test} "
            "and leave rows to train on; lower --val-size/--test-size"
        )
    pick = [items[i] for i in order]
    return pick[n_val + n_test :], pick[:n_val], pick[n_val : n_val + n_test]


@dataclass
class Splits:
    train: Prepared
    val: Prepared
    test: list[list[dict[str, str]]]  # conversations, for generation against references
    counts: Counter
    fmt: str
    ids: dict[int, str] = field(default_factory=dict)  # id(conversation) -> its example id
    rule: str = ""

    def ids_of(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        return [self.ids[id(c)] for c in conversations]

    def data_splits(self) -> DataSplits:
        """Which conversations each split holds (ids: position + content, so a changed file is a new split)."""
        return DataSplits(
            {
                "train": self.ids_of(self.train.conversations),
                "validation": self.ids_of(self.val.conversations),
                "test": self.ids_of(self.test),
            },
            self.rule,
        )


def build_splits(cfg: Any, tokenizer: Any) -> Splits:
    """Rows -> conversations -> seeded split -> tokenised train/val; the same call in train, eval and prepare."""
    rows, unreadable = load_rows(cfg.data, limit=cfg.limit)
    fmt = detect_format(rows, cfg.format, where=f"--data {cfg.data}")
    counts: Counter = Counter()
    if unreadable:
        counts["malformed"] += unreadable
    conversations = conversations_of(
        rows, fmt, supports_system(tokenizer), getattr(cfg, "strict", False), counts, f"--data {cfg.data}"
    )
    if not conversations:
        raise DataError(
            f"--data {cfg.data}: no usable conversation ({counts['no_assistant_turn']} without an "
            f"assistant turn, {counts['empty_turn']} with an empty turn, {counts['malformed']} "
            "malformed)"
        )
    train, val, test = split(conversations, cfg.val_size, cfg.test_size, cfg.split_seed)
    ids = {id(c): example_id(i, json.dumps(c, ensure_ascii=False)) for i, c in enumerate(conversations)}
    rule = (
        f"seeded shuffle of the {len(conversations)} conversations (--split-seed {cfg.split_seed}): "
        f"{len(val)} validation, {len(test)} test, the rest train"
    )
    strict = getattr(cfg, "strict", False)
    train_p = tokenize_conversations(tokenizer, train, cfg.max_length, cfg.drop_long, counts, strict)
    val_p = tokenize_conversations(tokenizer, val, cfg.max_length, cfg.drop_long, Counter(), strict)
    counts["rows"] = len(rows)
    return Splits(train_p, val_p, test, counts, fmt, ids, rule)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict[str, Any]]):
        self.examples = examples
        self.lengths = [len(e["input_ids"]) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


def pad_batch(examples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(examples: list[dict[str, Any]], capacity: int) -> list[dict[str, Any]]:
    """First-fit-decreasing packing of conversations into rows of at most `capacity` tokens; each row keeps
    per-conversation position ids and conversation ids (for the block-diagonal mask)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i]["input_ids"])
        slot = next((r for r, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([i])
            room.append(capacity - n)
        else:
            rows[slot].append(i)
            room[slot] -= n
    packed = []
    for members in rows:
        row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "doc_ids": []}
        for doc, i in enumerate(members):
            n = len(examples[i]["input_ids"])
            row["input_ids"] += examples[i]["input_ids"]
            row["labels"] += examples[i]["labels"]
            row["position_ids"] += list(range(n))
            row["doc_ids"] += [doc] * n
        packed.append(row)
    return packed


def pad_packed(rows: list[dict[str, Any]], pad_id: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Right-padded packed rows with a 4D additive mask (B, 1, T, T): causal inside a conversation, nothing
    across conversations or onto padding."""
    batch = pad_batch(rows, pad_id)
    B, T = batch["input_ids"].shape
    doc = torch.full((B, T), -1, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    for r, row in enumerate(rows):
        n = len(row["input_ids"])
        doc[r, :n] = torch.tensor(row["doc_ids"])
        position_ids[r, :n] = torch.tensor(row["position_ids"])
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = (doc[:, :, None] == doc[:, None, :]) & (doc[:, None, :] >= 0) & causal
    allowed |= torch.eye(T, dtype=torch.bool)  # padding rows attend to themselves only (no empty softmax)
    mask = torch.zeros((B, 1, T, T), dtype=dtype).masked_fill(~allowed[:, None], torch.finfo(dtype).min)
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": mask,
        "position_ids": position_ids,
        "labels": batch["labels"],
        "token_mask": batch["attention_mask"],
    }


def length_grouped_plan(lengths: list[int], batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """Shuffle, sort by length inside megabatches of MEGABATCH batches, then shuffle the batches."""
    order = torch.randperm(len(lengths), generator=gen).tolist()
    span = batch_size * MEGABATCH
    batches = []
    for start in range(0, len(order), span):
        mega = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
    shuffled = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in shuffled]
