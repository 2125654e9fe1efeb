"""A model that answers "no answer" to everything: eval says so in one line and scores HasAns/NoAns apart, and
predict prints "no answer" (not offsets -1--1)."""

from __future__ import annotations

import json

import pytest

from dlkit.qa.data import load_splits

ARGS = ["--max-length", "32", "--doc-stride", "8", "--batch-size", "32", "--lr", "3e-3", "--warmup", "0"]


def write_rows(path, examples, answers=True):
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": e.id,
                    "context": e.context,
                    "question": e.question,
                    "answers": {
                        "text": e.answers if answers else [],
                        "answer_start": e.answer_starts if answers else [],
                    },
                },
                ensure_ascii=False,
            )
            + "\n"
            for e in examples
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    """(run, its train() stderr, a v2 test file): tiny-bert trained on questions that are all unanswerable."""
    from dlkit.cli import main

    root = tmp_path_factory.mktemp("collapsed")
    splits = load_splits("builtin:qa-synthetic")
    train = write_rows(root / "unanswerable.jsonl", splits["train"][:400], answers=False)
    test = write_rows(root / "test.jsonl", splits["test"])
    run = root / "run"
    assert main(["qa", "train", "--data", str(train), "--output-dir", str(run), "--max-steps", "15", *ARGS]) == 0
    return run, test


def test_eval_warns_when_nearly_every_prediction_is_no_answer(cli, collapsed):
    run, test = collapsed
    result = cli("--json", "qa", "eval", "--run", run, "--data", test)
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["test_no_answer_pct"] >= 95
    share = scores["test_no_ans_total"] / scores["test_total"]
    assert scores["test_exact_match"] == pytest.approx(100 * share, abs=2)  # the unanswerable share, nothing more
    assert scores["test_has_ans_exact"] < 5 and scores["test_no_ans_exact"] > 95
    warning = [line for line in result.stderr.splitlines() if "predictions are 'no answer'" in line]
    assert len(warning) == 1 and f"({share:.0%})" in warning[0], result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_no_answer_pct"] >= 95 and metrics["val_no_ans_exact"] == metrics["val_no_ans_f1"] > 95


def test_training_says_it_collapsed(cli, tmp_path):
    splits = load_splits("builtin:qa-synthetic")
    train = write_rows(tmp_path / "unanswerable.jsonl", splits["train"][:200], answers=False)
    result = cli("qa", "train", "--data", train, "--output-dir", tmp_path / "run", "--max-steps", "8", *ARGS)
    assert result.exit_code == 0, result.stderr
    assert "of the validation predictions are 'no answer'" in result.stderr


def test_predict_prints_no_answer_plainly(cli, collapsed):
    run, _ = collapsed
    result = cli(
        "qa",
        "predict",
        "--run",
        run,
        "--context",
        "The capital of Valoria is Lima.",
        "--question",
        "What is the capital of Valoria?",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[:2] == ["no", "answer"], result.stdout
    assert result.stdout.split()[2].startswith("(p=") and "-1" not in result.stdout, result.stdout
    answer = json.loads(
        cli(
            "--json",
            "qa",
            "predict",
            "--run",
            run,
            "--context",
            "The capital of Valoria is Lima.",
            "--question",
            "What is the capital of Valoria?",
        ).stdout
    )
    assert answer["answer"] == "" and answer["start"] is None and answer["end"] is None
