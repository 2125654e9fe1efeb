"""`qa eval` scores the questions training held out, never the ones it trained on (unless --split train)."""

import json

from dlkit.builtin import BUILTINS


def test_eval_of_a_single_file_run_scores_its_held_out_contexts(cli, tmp_path):
    squad = json.loads((BUILTINS["qa-synthetic"].load() / "test.json").read_text(encoding="utf-8"))
    squad["data"] = squad["data"][:20]
    single = tmp_path / "all.json"  # one SQuAD file: training holds out 10% of its contexts
    single.write_text(json.dumps(squad), encoding="utf-8")
    run = tmp_path / "run"
    trained = cli(
        "qa",
        "train",
        "--data",
        single,
        "--max-length",
        "32",
        "--doc-stride",
        "8",
        "--max-steps",
        "1",
        "--batch-size",
        "8",
        "--output-dir",
        run,
    )
    assert trained.exit_code == 0, trained.stderr
    recorded = json.loads((run / "config.json").read_text())["_dlkit"]["splits"]
    ids = json.loads((run / "splits.json").read_text())
    assert recorded["sizes"] == {"train": len(ids["train"]), "validation": len(ids["validation"])}
    assert "10% of the train contexts" in recorded["rule"] and len(ids["validation"]) > 0

    default = cli("--json", "qa", "eval", "--run", run, "--max-answer-length", "8")
    assert default.exit_code == 0, default.stderr
    result = json.loads(default.stdout)
    assert result["split"] == "validation" and result["split_size"] == len(ids["validation"])
    assert result["questions"] == len(ids["validation"]) and "validation_f1" in result
    scored = json.loads((run / "eval" / "validation_predictions.json").read_text(encoding="utf-8"))
    assert len(scored) == len(ids["validation"])
    assert json.loads((run / "metrics.json").read_text())["validation_examples"] == len(ids["validation"])

    named = cli("--json", "qa", "eval", "--run", run, "--split", "validation")
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout)["split_size"] == len(ids["validation"])

    shown = cli("qa", "eval", "--run", run, "--split", "train").stdout
    assert f"qa eval (train, {len(ids['train'])} questions)" in shown
    train = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    assert train["split"] == "train" and train["split_size"] == len(ids["train"]) and "train_f1" in train


def test_evaluated_ids_are_disjoint_from_trained_ids(cli, trained_run):
    from dlkit.core.run import Run
    from dlkit.qa.data import question_id
    from dlkit.qa.evaluate import questions_to_score

    trained = set(json.loads((trained_run / "splits.json").read_text())["train"])
    run = Run.open(trained_run, "qa")
    for split in (None, "validation"):
        examples, part, _, _ = questions_to_score(run, None, split, False)
        assert part.name == (split or "test") and examples
        assert not {question_id(e) for e in examples} & trained


def test_a_duplicate_of_a_training_question_is_left_out(cli, trained_run, tmp_path):
    train_file = BUILTINS["qa-synthetic"].load() / "train.json"
    first = json.loads(train_file.read_text(encoding="utf-8"))["data"][0]
    leaky = tmp_path / "leaky.json"
    leaky.write_text(json.dumps({"data": [first]}), encoding="utf-8")
    result = cli("--json", "qa", "eval", "--run", trained_run, "--data", leaky)
    assert result.exit_code == 2 and "trained on" in result.stderr and "--split train" in result.stderr
