"""Labels under both chat templates, format detection, and `dlkit llm prepare` with its bad inputs."""

from __future__ import annotations

import json

import pytest
from checks import one_line_error
from llm_helpers import write_jsonl
from transformers import AutoTokenizer

from dlkit.builtin.tiny_lm import tiny_gemma2, tiny_llama
from dlkit.llm.data import IGNORE, detect_format, encode, merge_system, supports_system, to_messages

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of Iran?"},
    {"role": "assistant", "content": "Tehran"},
    {"role": "user", "content": "پایتخت فرانسه کجاست؟"},
    {"role": "assistant", "content": "پاریس است."},
]


@pytest.fixture(scope="module", params=["llama", "gemma2"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(tiny_llama() if request.param == "llama" else tiny_gemma2())


def labelled_segments(tokenizer, ids, labels) -> list[str]:
    segments, current = [], []
    for token_id, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            assert label == token_id
            current.append(token_id)
        elif current:
            segments.append(tokenizer.decode(current))
            current = []
    if current:
        segments.append(tokenizer.decode(current))
    return segments


def test_labels_are_exactly_the_assistant_turns(tokenizer):
    messages = CONVERSATION if supports_system(tokenizer) else merge_system(CONVERSATION)
    ids, labels = encode(tokenizer, messages)
    eot = "<|eot_id|>" if supports_system(tokenizer) else "<end_of_turn>"
    assert labelled_segments(tokenizer, ids, labels) == [f"Tehran{eot}", f"پاریس است.{eot}"]
    # every other token (system, user, headers, the template's newlines) is masked
    masked = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE])
    assert "You are terse." in masked and "capital of Iran" in masked and "Tehran" not in masked


def test_gemma_has_no_system_role_and_the_text_is_merged():
    llama, gemma = (AutoTokenizer.from_pretrained(p()) for p in (tiny_llama, tiny_gemma2))
    assert supports_system(llama) and not supports_system(gemma)
    merged = merge_system(CONVERSATION)
    assert merged[0] == {"role": "user", "content": "You are terse.\n\nWhat is the capital of Iran?"}
    assert [m["role"] for m in merged] == ["user", "assistant", "user", "assistant"]


def test_formats_are_detected_and_converted():
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "s"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    openai = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    alpaca = {"instruction": "q", "input": "ctx", "output": "a"}
    assert [detect_format([r]) for r in (sharegpt, openai, alpaca)] == ["sharegpt", "openai", "alpaca"]
    assert to_messages(sharegpt, "sharegpt")[0] == {"role": "system", "content": "s"}
    assert to_messages(alpaca, "alpaca") == [
        {"role": "user", "content": "q\n\nctx"},
        {"role": "assistant", "content": "a"},
    ]


def test_prepare_reports_and_writes_the_split(cli, tmp_path):
    out = tmp_path / "prep"
    result = cli(
        "llm", "prepare", "--model", "builtin:tiny-gemma2", "--data", "builtin:instruct", "--output-dir", out, "--json"
    )
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["format"] == "sharegpt" and stats["rows"] == 600 and stats["system_merged"] > 0
    assert "merged into their first user turn" in result.stderr
    assert stats["train"] + stats["val"] + stats["test"] == stats["conversations"] == 600
    assert stats["tokens_p50"] <= stats["tokens_p95"] <= stats["tokens_max"]
    assert (out / "plots" / "lengths.png").stat().st_size > 1000
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][-1]["role"] == "assistant"


def test_split_is_seeded(cli, tmp_path):
    runs = [cli("llm", "prepare", "--output-dir", tmp_path / str(i), "--split-seed", "3", "--json") for i in range(2)]
    assert (tmp_path / "0" / "test.jsonl").read_text() == (tmp_path / "1" / "test.jsonl").read_text()
    assert all(r.exit_code == 0 for r in runs)


def test_conversation_without_assistant_is_skipped_and_counted(cli, tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 5
    rows += [{"messages": [{"role": "user", "content": "no answer"}]}] * 2
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    result = cli(
        "llm",
        "prepare",
        "--data",
        data,
        "--output-dir",
        tmp_path / "p",
        "--val-size",
        "1",
        "--test-size",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["no_assistant_turn"] == 2


def test_long_samples_are_truncated_or_dropped(cli, tmp_path):
    long = " ".join(["word"] * 80)
    rows = [{"instruction": "q", "output": "short"}] * 6 + [{"instruction": long, "output": "a"}] * 2
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    args = ("llm", "prepare", "--data", data, "--max-length", "40", "--val-size", "1", "--test-size", "1", "--json")
    kept = json.loads(cli(*args, "--output-dir", tmp_path / "a").stdout)
    dropped = json.loads(cli(*args, "--output-dir", tmp_path / "b", "--drop-long").stdout)
    # a long prompt keeps its end, so its answer is still trained on; --drop-long drops the row instead
    assert kept["truncated"] == 2 and kept["conversations"] == 8 and kept["dropped_long"] == 0
    assert dropped["dropped_long"] == 2 and dropped["truncated"] == 0 and dropped["conversations"] == 6


@pytest.mark.parametrize("flag", ["--val-size", "--test-size"])
def test_a_fractional_row_count_is_refused(cli, flag):
    one_line_error(cli("llm", "prepare", flag, "2.5"), f"{flag} 2.5", "fraction below 1", "whole number")
    one_line_error(cli("llm", "train", flag, "2.5"), f"{flag} 2.5")


def test_missing_columns_names_what_was_found(cli, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    one_line_error(cli("llm", "prepare", "--data", data), "missing columns", "found: answer, question")


def test_empty_file(cli, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    one_line_error(cli("llm", "prepare", "--data", tmp_path / "empty.jsonl"), "empty")


def test_non_utf8_file(cli, tmp_path):
    (tmp_path / "latin.jsonl").write_bytes('{"instruction": "caf\u00e9", "output": "x"}\n'.encode("latin-1"))
    one_line_error(cli("llm", "prepare", "--data", tmp_path / "latin.jsonl"), "not UTF-8")


def test_csv_and_json_files_are_read(cli, tmp_path):
    (tmp_path / "d.csv").write_text("instruction,output\n" + "".join(f"q{i},a{i}\n" for i in range(10)))
    (tmp_path / "d.json").write_text(json.dumps([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)]))
    for name in ("d.csv", "d.json"):
        result = cli("llm", "prepare", "--data", tmp_path / name, "--output-dir", tmp_path / name[2:], "--json")
        assert result.exit_code == 0 and json.loads(result.stdout)["format"] == "alpaca"


def test_forced_format_must_match_the_columns(cli, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "output": "a"}])
    one_line_error(
        cli("llm", "prepare", "--data", data, "--format", "sharegpt"),
        "--format sharegpt needs the column(s) conversations",
        "found: instruction, output",
    )


def test_train_gemma_on_persian_data_end_to_end(cli, tmp_path):
    run = tmp_path / "g"
    result = cli(
        "llm",
        "train",
        "--model",
        "builtin:tiny-gemma2",
        "--data",
        "builtin:instruct-fa",
        "--limit",
        "80",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--output-dir",
        run,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert "no system role" in result.stderr  # the system turns were merged, and the user is told
    metrics = json.loads(result.stdout)
    assert metrics["arch"] == "gemma2" and metrics["method"] == "lora" and metrics["steps"] == 3
    samples = list((run / "samples").glob("step_*.md"))
    assert samples and "**question:**" in samples[0].read_text(encoding="utf-8")
    assert (run / "plots" / "loss.png").is_file() and (run / "checkpoints" / "final" / "adapter_config.json").is_file()


def test_strict_fails_on_a_malformed_row(cli, tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}] * 20
    rows.append({"conversations": [{"speaker": "human", "text": "q"}]})
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    one_line_error(
        cli("llm", "train", "--data", data, "--strict", "--output-dir", tmp_path / "r"), "row 20: unreadable turn"
    )


def test_unreadable_jsonl_lines_are_skipped_with_one_warning(cli, tmp_path):
    good = json.dumps({"instruction": "q", "output": "a"})
    (tmp_path / "d.jsonl").write_text("\n".join([good] * 6 + ['{"instruction": "cut', good, "[1, 2]"]) + "\n")
    result = cli(
        "llm",
        "prepare",
        "--data",
        tmp_path / "d.jsonl",
        "--output-dir",
        tmp_path / "p",
        "--val-size",
        "1",
        "--test-size",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {tmp_path / 'd.jsonl'}: skipped 2 unreadable lines (first: line 7: invalid JSON "
        "(Unterminated string starting at))"
    ]
    assert json.loads(result.stdout)["malformed"] == 2
