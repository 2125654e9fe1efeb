import json

import pytest
from checks import one_line_error


def squad_file(tmp_path, qas, context="The capital of Valoria is Lima. People in Valoria speak Greek."):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return path


def test_prepare_statistics_plots_and_checked_splits(cli, tmp_path):
    out = tmp_path / "prep"
    result = cli("--json", "qa", "prepare", "--max-length", "32", "--doc-stride", "8", "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    train = stats["splits"]["train"]
    assert train["questions"] > 1000 and train["unanswerable"] > 0 and train["windows_per_question"] > 1.5
    assert 0 < train["answers_past_max_length_pct"] < 100
    assert train["context_tokens"]["max"] > 32 and stats["skipped"] == 0
    assert (out / "plots" / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "stats.json").read_text())["splits"]["test"]["questions"] > 0
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert {"id", "context", "question", "answers"} <= set(first)


def test_prepare_repairs_offsets_and_counts_answers_outside_the_context(cli, tmp_path):
    path = squad_file(
        tmp_path,
        [
            {"id": "off", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 24}]},
            {"id": "outside", "question": "Language?", "answers": [{"text": "Greek", "answer_start": 999}]},
        ],
    )
    result = cli("--json", "qa", "prepare", "--data", path, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["repaired_offsets"] == 1 and stats["skipped"] == 1
    assert stats["skip_reasons"] == {"answer_start outside the context": 1}
    assert "skipped 1 questions: 1 answer_start outside the context" in result.stderr
    # --strict refuses what the default repairs or skips: the first such question stops it
    one_line_error(
        cli("qa", "prepare", "--data", path, "--strict", "--output-dir", tmp_path / "o2"),
        "question off: answer 'Lima' is at character 26, not at its answer_start 24",
    )
    outside = squad_file(
        tmp_path, [{"id": "outside", "question": "Language?", "answers": [{"text": "Greek", "answer_start": 999}]}]
    )
    one_line_error(
        cli("qa", "prepare", "--data", outside, "--strict", "--output-dir", tmp_path / "o3"),
        "question outside",
        "answer_start 999 is outside the context",
    )


def test_not_squad_shaped_file(cli, tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": [1], "version": "1"}))
    one_line_error(cli("qa", "prepare", "--data", path), "not SQuAD-shaped", "found keys: rows, version")
    flat = tmp_path / "x.jsonl"
    flat.write_text(json.dumps({"text": "a", "label": 1}) + "\n")
    one_line_error(cli("qa", "train", "--data", flat), "line 1", "found: label, text")


def test_empty_question(cli, tmp_path):
    path = squad_file(
        tmp_path,
        [
            {"id": "good", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 26}]},
            {"id": "blank", "question": "  ", "answers": [{"text": "Lima", "answer_start": 26}]},
        ],
    )
    result = cli("--json", "qa", "prepare", "--data", path, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0 and json.loads(result.stdout)["skip_reasons"] == {"empty question": 1}
    one_line_error(
        cli("qa", "prepare", "--data", path, "--strict", "--output-dir", tmp_path / "o2"),
        "question blank: empty question",
    )


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_doc_stride_not_below_max_length(cli, command, tmp_path):
    one_line_error(
        cli("qa", command, "--max-length", "64", "--doc-stride", "64", "--output-dir", tmp_path / "r"),
        "--doc-stride (64) must be smaller than --max-length (64)",
    )


def test_slow_tokenizer_is_refused(cli, tmp_path):
    from transformers import BertTokenizerLegacy

    from dlkit.builtin import BUILTINS

    folder = tmp_path / "slow"
    folder.mkdir()
    vocab = (BUILTINS["tiny-bert"].load() / "tokenizer.json").read_text(encoding="utf-8")
    words = sorted(json.loads(vocab)["model"]["vocab"], key=json.loads(vocab)["model"]["vocab"].get)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerLegacy(str(folder / "vocab.txt")).save_pretrained(folder)
    one_line_error(cli("qa", "prepare", "--model", folder), "BertTokenizerLegacy is a slow tokenizer", "offset mapping")


def test_run_folder_of_another_group(cli, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_dlkit": {"group": "charrnn"}}))
    one_line_error(cli("qa", "eval", "--run", tmp_path), "is a charrnn run, not a qa run")
    one_line_error(
        cli("qa", "predict", "--run", tmp_path, "--context", "Some text.", "--question", "What?"),
        "is a charrnn run, not a qa run",
    )


def test_predict_empty_question(cli, tmp_path):
    one_line_error(
        cli("qa", "predict", "--run", tmp_path, "--context", "Some text.", "--question", " "), "--question is empty"
    )


def test_offline_hub_ids_fail_in_one_line(cli):
    one_line_error(cli("qa", "prepare", "--data", "Gholamreza/pquad"), "--data Gholamreza/pquad", "offline")
    one_line_error(cli("qa", "prepare", "--model", "HooshvareLab/bert-base-parsbert-uncased"), "--model", "offline")


def test_dropout_linear_head_trains_and_is_recorded(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "--json",
        "qa",
        "train",
        "--head",
        "dropout-linear",
        "--max-steps",
        "3",
        "--eval-every",
        "3",
        "--max-eval-examples",
        "20",
        "--max-length",
        "64",
        "--doc-stride",
        "16",
        "--output-dir",
        run,
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["method"] == "dropout-linear" and metrics["steps"] == 3 and metrics["val_questions"] == 20
    settings = json.loads((run / "checkpoints" / "final" / "dlkit_qa.json").read_text())
    assert settings["head"] == "dropout-linear" and settings["head_dropout"] == 0.2 and settings["max_length"] == 64
    from transformers import AutoModelForQuestionAnswering

    assert AutoModelForQuestionAnswering.from_pretrained(run / "checkpoints" / "final").num_parameters() > 0


def test_question_leaving_no_room_beyond_the_stride(cli, tmp_path):
    one_line_error(
        cli("qa", "prepare", "--max-length", "16", "--doc-stride", "8", "--output-dir", tmp_path),
        "for the context, not more than --doc-stride 8",
        "raise --max-length or lower --doc-stride",
    )


def test_prepare_counts_answers_past_max_length_exactly(cli, tmp_path):
    context = (
        "The capital of Valoria is Lima. "
        + "The reader answers a long book in the library. " * 4
        + "People in Valoria speak Greek."
    )
    path = squad_file(
        tmp_path,
        [
            {"id": "early", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 26}]},
            {
                "id": "late",
                "question": "Language?",
                "answers": [{"text": "Greek", "answer_start": context.index("Greek")}],
            },
        ],
        context=context,
    )
    result = cli(
        "--json",
        "qa",
        "prepare",
        "--data",
        path,
        "--max-length",
        "24",
        "--doc-stride",
        "8",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.stderr
    train = json.loads(result.stdout)["splits"]["all"]  # squad.json names no split
    assert train["answers_past_max_length_pct"] == 50.0 and train["windows_per_question"] > 2


def test_prepare_plots_questions_by_number_of_answers(cli, tmp_path):
    path = squad_file(
        tmp_path,
        [
            {"id": "none", "question": "Mayor?", "answers": [], "is_impossible": True},
            {"id": "one", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 25}]},
            {"id": "one-b", "question": "Speak?", "answers": [{"text": "Greek", "answer_start": 56}]},
            {"id": "three", "question": "Capital city?", "answers": [{"text": "Lima", "answer_start": 25}] * 3},
        ],
    )
    result = cli("--json", "qa", "prepare", "--data", path, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    per_split = json.loads(result.stdout)["answers_per_question"]
    merged: dict[str, int] = {}
    for counts in per_split.values():
        for k, v in counts.items():
            merged[k] = merged.get(k, 0) + v
    assert merged == {"0": 1, "1": 2, "3": 1}
    assert (tmp_path / "out" / "plots" / "answers_per_question.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("name", "split"), [("pqa_test.json", "test"), ("questions.json", "all")])
def test_prepare_names_a_single_file_by_the_split_it_is(cli, tmp_path, name, split):
    qas = [{"id": "q", "question": "Capital?", "answers": [{"text": "Lima", "answer_start": 26}]}]
    path = squad_file(tmp_path, qas)
    data = path.rename(tmp_path / name)
    result = cli("--json", "qa", "prepare", "--data", data, "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["splits"]) == [split]
    assert [p.name for p in (tmp_path / "out").glob("*.jsonl")] == [f"{split}.jsonl"]


def test_predict_context_file_that_is_not_utf8(cli, tmp_path, trained_run):
    passage = tmp_path / "passage.txt"
    passage.write_bytes("The capital of Valoria is Lima.".encode("utf-16"))
    one_line_error(
        cli("qa", "predict", "--run", trained_run, "--context", passage, "--question", "Capital?"),
        f"--context {passage}: not UTF-8 text",
        "re-save it as UTF-8",
    )
