"""End to end on builtin data: train (shared fixture), eval, predict; learning and striding thresholds."""

import json

from dlkit.qa.config import WindowConfig
from dlkit.qa.data import QAExample, load_splits
from dlkit.qa.evaluate import spans_for
from dlkit.qa.models import SpanQA, check_and_load, load_qa_model
from dlkit.qa.task import score
from dlkit.qa.windows import make_windows


def test_training_lifts_exact_match_well_above_the_untrained_model(cli, trained_run):
    result = cli("--json", "qa", "eval", "--run", trained_run, "--worst", "3")
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    assert trained["split"] == "test" and len(trained["worst"]) == 3

    location, tokenizer = check_and_load("builtin:tiny-bert")
    untrained_model = SpanQA(load_qa_model(location, "builtin:tiny-bert")).eval()
    examples = load_splits("builtin:qa-synthetic")["test"]
    cfg = WindowConfig(max_length=32, doc_stride=8)
    untrained = score(examples, spans_for(untrained_model, tokenizer, examples, cfg, True, 64))

    assert untrained["exact_match"] < 15
    assert trained["test_exact_match"] > untrained["exact_match"] + 35
    assert trained["test_f1"] >= trained["test_exact_match"]
    assert {"test_has_ans_exact", "test_has_ans_f1", "test_no_ans_exact", "test_no_ans_f1"} <= set(trained)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"val_has_ans_exact", "val_has_ans_f1", "val_no_ans_exact", "val_no_ans_f1"} <= set(metrics)
    assert metrics["test_exact_match"] == trained["test_exact_match"] and metrics["val_exact_match"] > 0
    predictions = json.loads((trained_run / "eval" / "test_predictions.json").read_text(encoding="utf-8"))
    assert set(predictions) == {e.id for e in examples}
    assert (trained_run / "plots" / "test_f1_by_context_length.png").exists()
    assert (trained_run / "plots" / "loss.png").exists()
    assert json.loads((trained_run / "samples" / "val_predictions.json").read_text())["samples"]


def test_answers_beyond_the_first_window_are_found(cli, trained_run, tmp_path):
    """Test questions with two filler sentences put before their context: every answer moves out of the first
    window, so only the later, overlapping windows can find it."""
    from dlkit.builtin.corpus import bilingual_corpus

    _, tokenizer = check_and_load("builtin:tiny-bert")
    fillers = bilingual_corpus(num_sentences=200, seed=5)
    english, persian = [s for s in fillers if s.isascii()], [s for s in fillers if not s.isascii()]
    shifted = []
    for i, e in enumerate(x for x in load_splits("builtin:qa-synthetic")["test"] if x.answerable):
        pool = english if e.question.isascii() else persian
        prefix = f"{pool[2 * i % len(pool)]} {pool[(2 * i + 1) % len(pool)]} "
        shifted.append(
            QAExample(e.id, prefix + e.context, e.question, e.answers, [s + len(prefix) for s in e.answer_starts])
        )
    windows = make_windows(tokenizer, shifted, WindowConfig(max_length=32, doc_stride=8))
    first_window = {}
    for window in windows:
        first_window.setdefault(window.example_index, window)
    late = [shifted[i] for i, w in first_window.items() if w.start_position == w.cls_index]
    assert len(late) > 100
    path = tmp_path / "late.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": e.id,
                    "context": e.context,
                    "question": e.question,
                    "answers": {"text": e.answers, "answer_start": e.answer_starts},
                },
                ensure_ascii=False,
            )
            + "\n"
            for e in late
        ),
        "utf-8",
    )

    result = cli("--json", "qa", "eval", "--run", trained_run, "--data", path)
    assert result.exit_code == 0, result.stderr
    late_em = json.loads(result.stdout)["late_exact_match"]
    original = json.loads(cli("--json", "qa", "eval", "--run", trained_run).stdout)["test_has_ans_exact"]
    assert late_em > 30  # 0 if only the first window were read
    assert late_em > 0.6 * original  # about as good as with the answers where they were


def test_predict_agrees_with_eval(cli, trained_run):
    predictions = json.loads((trained_run / "eval" / "test_predictions.json").read_text(encoding="utf-8"))
    examples = load_splits("builtin:qa-synthetic")["test"]
    right = next(e for e in examples if e.answerable and predictions[e.id] == e.answers[0])
    context_file = trained_run / "context.txt"
    context_file.write_text(right.context, encoding="utf-8")
    result = cli(
        "--json",
        "qa",
        "predict",
        "--run",
        trained_run,
        "--context",
        context_file,
        "--question",
        right.question,
        "--top-k",
        "3",
    )
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"] == right.answers[0] and len(answer["candidates"]) == 3
    assert right.context[answer["start"] : answer["end"]] == right.answers[0]
    assert 0 < answer["probability"] <= 1
