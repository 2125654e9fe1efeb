"""`dlkit llm reason`: prompts per strategy, the vote of self-consistency, and the command end to end."""

from __future__ import annotations

import json
import random

import pytest
from llm_helpers import write_jsonl
from transformers import AutoTokenizer

from dlkit.builtin.reasoning import problems as make_problems
from dlkit.builtin.tiny_lm import tiny_llama
from dlkit.llm.reason import TRIGGERS, Problem, ReasonConfig, build_prompt, load_problems, reason

GOLD = {r["question"]: r["answer"].rsplit("####", 1)[1].strip() for r in make_problems(60)}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_llama())


def noisy_model(p_right: float):
    """A controlled model: each completion reasons, then answers right with probability p_right, else a random
    wrong number; greedy (temperature 0) completions are one such draw per prompt."""

    def complete(prompts, temperature, seed):
        rng = random.Random(seed)
        texts = []
        for prompt in prompts:
            question = next(q for q in GOLD if q in prompt.rsplit("<|start_header_id|>user", 1)[1])
            gold = int(GOLD[question].replace(",", ""))
            answer = gold if rng.random() < p_right else gold + rng.randint(1, 50)
            texts.append(f"First 2 + 3 = 5.\nAnswer: {answer}\nThen 9 more steps.")
        return texts, [len(t.split()) for t in texts]

    return complete


def test_voting_beats_a_single_sample_when_samples_disagree(tmp_path, tokenizer):
    cfg = ReasonConfig(
        strategies=["cot", "self-consistency"],
        data="builtin:reasoning",
        limit=40,
        shots=0,
        samples=9,
        temperature=0.8,
        output_dir=str(tmp_path / "r"),
    )
    result = reason(cfg, complete=noisy_model(0.5), tokenizer=tokenizer)
    rows = {r["strategy"]: r for r in result["strategies"]}
    assert rows["cot"]["questions"] == rows["self-consistency"]["questions"] == 40
    assert rows["cot"]["accuracy"] < 0.75
    assert rows["self-consistency"]["single_sample_accuracy"] < 0.75
    assert rows["self-consistency"]["accuracy"] >= 0.9
    assert rows["self-consistency"]["mean_generated_tokens"] == pytest.approx(9 * rows["cot"]["mean_generated_tokens"])
    records = [json.loads(line) for line in (tmp_path / "r/samples/completions.jsonl").read_text().splitlines()]
    assert len(records) == 80 and all(len(r["completions"]) == 9 for r in records[40:])
    assert all(TRIGGERS["en"] in r["prompt"] for r in records[:40])
    assert (tmp_path / "r/plots/accuracy.png").is_file() and (tmp_path / "r/reason.csv").is_file()


def test_prompts_per_strategy_and_language(tokenizer):
    shot = Problem("What is 2 + 2?", "4", "2 + 2 = 4.")
    question = Problem("سارا ۳ سیب دارد؟", "3", "")
    direct, opening = build_prompt(tokenizer, "direct", question, [shot], "fa", TRIGGERS["fa"])
    assert opening == "پاسخ: " and direct.endswith(opening) and shot.question not in direct
    cot, opening = build_prompt(tokenizer, "cot", question, [shot], "fa", TRIGGERS["fa"])
    assert cot.endswith("بیایید گام به گام فکر کنیم.\n")
    few, opening = build_prompt(tokenizer, "fewshot-cot", question, [shot], "fa", TRIGGERS["fa"])
    assert opening == "" and "2 + 2 = 4.\nپاسخ: 4" in few and few.index(shot.question) < few.index(question.question)


def test_persian_data_and_trigger_override(tmp_path, tokenizer):
    cfg = ReasonConfig(
        strategies=["cot"], data="builtin:reasoning-fa", limit=3, trigger="Think.", output_dir=str(tmp_path / "fa")
    )
    seen = []

    def complete(prompts, temperature, seed):
        seen.extend(prompts)
        return ["پاسخ: ۱"] * len(prompts), [2] * len(prompts)

    result = reason(cfg, complete=complete, tokenizer=tokenizer)
    assert result["language"] == "fa" and all(p.endswith("Think.\n") for p in seen)


def test_gsm8k_file_shots_are_not_scored(tmp_path, tokenizer):
    rows = [
        {"question": f"q{i}: what is {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}
        for i in range(6)
    ]
    data = write_jsonl(tmp_path / "gsm.jsonl", rows)
    assert load_problems(str(data))[2] == Problem("q2: what is 2 + 1?", "3", "2 + 1 = 3")
    seen = []

    def complete(prompts, temperature, seed):
        seen.extend(prompts)
        return ["Answer: 0"] * len(prompts), [1] * len(prompts)

    result = reason(
        ReasonConfig(strategies=["fewshot-cot"], data=str(data), shots=2, output_dir=str(tmp_path / "o")),
        complete=complete,
        tokenizer=tokenizer,
    )
    assert result["questions"] == 4 and result["shots"] == 2
    assert all("q0:" in p and "q1:" in p for p in seen) and not any(p.endswith("q0: what is 0 + 1?") for p in seen)


def test_reason_command_on_a_tiny_model(cli, tmp_path):
    out = tmp_path / "reason"
    result = cli(
        "--json",
        "llm",
        "reason",
        "--limit",
        "2",
        "--strategy",
        "direct",
        "--strategy",
        "self-consistency",
        "--samples",
        "2",
        "--shots",
        "1",
        "--max-new-tokens",
        "4",
        "--output-dir",
        out,
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["strategy"] for r in data["strategies"]] == ["direct", "self-consistency"]
    assert all(0 < r["mean_generated_tokens"] <= 4 * r["samples"] for r in data["strategies"])
    assert json.loads((out / "metrics.json").read_text())["direct_accuracy"] == data["strategies"][0]["accuracy"]


def test_reason_bad_input(cli, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "completion": "1"}])
    result = cli("llm", "reason", "--data", bad, "--output-dir", tmp_path / "o")
    assert result.exit_code == 2 and "expected a 'question' and an 'answer' column" in result.stderr
    result = cli("llm", "reason", "--strategy", "magic", "--output-dir", tmp_path / "o")
    assert result.exit_code == 2 and "--strategy magic" in result.stderr
    nonum = write_jsonl(tmp_path / "nonum.jsonl", [{"question": "x", "answer": "none"}])
    result = cli("llm", "reason", "--data", nonum, "--output-dir", tmp_path / "o")
    assert result.exit_code == 2 and "row 1 has no number" in result.stderr


def test_hub_gsm8k_scores_its_test_split_of_the_main_config(monkeypatch, tmp_path, tokenizer):
    import datasets

    from dlkit.core import sources

    test = [{"question": "What is 1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}] * 3
    asked = []
    monkeypatch.setattr(sources, "resolve", lambda spec, kind, flag: sources.Source("hub", spec, spec))
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda repo: ["main", "socratic"])
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda repo, name: (
            asked.append((repo, name))
            or datasets.DatasetDict(
                {"train": datasets.Dataset.from_list(test * 2), "test": datasets.Dataset.from_list(test)}
            )
        ),
    )
    result = reason(
        ReasonConfig(strategies=["direct"], data="openai/gsm8k", output_dir=str(tmp_path / "hub")),
        complete=lambda prompts, t, s: (["2"] * len(prompts), [1] * len(prompts)),
        tokenizer=tokenizer,
    )
    assert asked == [("openai/gsm8k", "main")]
    assert result["split"] == "test" and result["questions"] == 3 and result["strategies"][0]["accuracy"] == 1.0


def test_empty_questions_are_skipped_and_counted_or_refused(tmp_path, capsys):
    from dlkit.core.errors import DataError

    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(40)]
    rows[3]["question"] = "  "
    assert len(load_problems(str(write_jsonl(tmp_path / "one.jsonl", rows)))) == 39
    assert "skipped 1 of 40 rows with an empty question (first: row 4, field 'question')" in capsys.readouterr().err
    rows[10]["question"] = rows[20]["question"] = ""
    with pytest.raises(DataError, match=r"3 of 40 rows \(8%\) have an empty question \(first: row 4"):
        load_problems(str(write_jsonl(tmp_path / "three.jsonl", rows)))
