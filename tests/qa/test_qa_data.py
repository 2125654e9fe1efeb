import json
from pathlib import Path

import pytest

from dlkit.core.errors import DataError
from dlkit.qa.data import LoadReport, load_splits, locate_answer, read_file


def squad_file(tmp_path, qas, context="The capital of Valoria is Lima. Lima is large."):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


def test_builtin_answers_are_spans_of_their_contexts():
    splits = load_splits("builtin:qa-synthetic")
    assert set(splits) == {"train", "validation", "test"}
    examples = [e for split in splits.values() for e in split]
    assert any(not e.question.isascii() for e in examples) and any(e.question.isascii() for e in examples)
    unanswerable = [e for e in examples if not e.answerable]
    assert 0 < len(unanswerable) < len(examples) / 5
    for e in examples:
        for text, start in zip(e.answers, e.answer_starts, strict=True):
            assert e.context[start : start + len(text)] == text


def test_off_by_a_few_offset_is_repaired_and_far_one_skipped(tmp_path):
    report = LoadReport()
    examples = read_file(
        squad_file(
            tmp_path,
            [
                {"id": "ok", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 26}]},
                {"id": "off", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 23}]},
                {"id": "far", "question": "What?", "answers": [{"text": "Paris", "answer_start": 3}]},
                {"id": "outside", "question": "What?", "answers": [{"text": "Lima", "answer_start": 400}]},
                {"id": "none", "question": "Currency?", "answers": [], "is_impossible": True},
            ],
        ),
        report=report,
    )
    assert [e.id for e in examples] == ["ok", "off", "none"]
    assert examples[1].answer_starts == [26] and report.repaired == 1
    assert report.skipped == 2
    assert report.reasons == {"answer text not found near answer_start": 1, "answer_start outside the context": 1}


def test_offset_check_folds_persian_spelling_variants():
    context = "کتاب را می\u200cخواند و یادداشت می\u200cکند."
    # gold written with Arabic yeh and a space instead of the ZWNJ, at the right offset
    start = context.index("می")
    assert locate_answer(context, "مي خواند", start) == (start, "")
    assert locate_answer(context, "مي خواند", start - 2) == (start, "")  # and repaired when a little off


def test_flat_jsonl_and_csv_read_like_squad(tmp_path):
    row = {
        "id": "a",
        "title": "t",
        "context": "The capital of Valoria is Lima.",
        "question": "Capital?",
        "answers": {"text": ["Lima"], "answer_start": [26]},
    }
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps(row) + "\n")
    csv_path = tmp_path / "d.csv"
    csv_path.write_text(
        "id,context,question,answer_text,answer_start\nb,The capital of Valoria is Lima.,Capital?,Lima,26\n"
    )
    for path in (jsonl, csv_path):
        (example,) = read_file(path)
        assert example.answers == ["Lima"] and example.answer_starts == [26]


def test_not_squad_shaped_names_the_keys_found(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": [], "meta": {}}))
    with pytest.raises(DataError, match=r"not SQuAD-shaped.*found keys: meta, rows"):
        read_file(path)


def test_hub_dataset_rows_and_split_names(monkeypatch):
    import datasets

    import dlkit.qa.data as qa_data
    from dlkit.core.sources import Source

    row = {
        "id": "1",
        "title": "t",
        "context": "پایتخت والوریا لیما است.",
        "question": "پایتخت والوریا کجاست؟",
        "answers": {"text": ["لیما"], "answer_start": [15]},
    }
    unanswerable = {**row, "id": "2", "answers": {"text": [], "answer_start": []}}
    hub = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([row, unanswerable]), "dev": datasets.Dataset.from_list([row])}
    )
    monkeypatch.setattr(qa_data, "resolve", lambda spec, kind, flag: Source("hub", spec, spec))
    monkeypatch.setattr(datasets, "load_dataset", lambda name: hub)
    splits = load_splits("someone/persian-qa")
    assert set(splits) == {"train", "validation"}
    assert [e.answers for e in splits["train"]] == [["لیما"], []]
    assert splits["validation"][0].answer_starts == [15]


def test_builtin_tiny_bert_is_the_same_in_every_fresh_cache(tmp_path):
    """Built in two processes (each with its own hash seeds) into two empty caches, builtin:tiny-bert has the
    same vocabulary and weights: which embedding row each word gets must not change from machine to machine."""
    import hashlib
    import os
    import subprocess
    import sys

    digests = []
    for name in ("a", "b"):
        env = {**os.environ, "DLKIT_CACHE": str(tmp_path / name), "PYTHONHASHSEED": "random"}
        code = "from dlkit.builtin import BUILTINS; print(BUILTINS['tiny-bert'].load())"
        folder = (
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        digests.append(
            {
                f: hashlib.sha256((Path(folder) / f).read_bytes()).hexdigest()
                for f in ("tokenizer.json", "model.safetensors")
            }
        )
    assert digests[0] == digests[1]
