"""Every method family beats the untuned model on a task with one right answer; LoRA modules compose by
arithmetic; eval, generate and sweep fill the run folders."""

from __future__ import annotations

import json

import pytest
from llm_helpers import exact_match_on_test, train_run

FAMILIES = {  # method: (learning rate, exact-match threshold); the untuned model scores 0
    "prompt": (1e-1, 0.3),
    "lora": (3e-2, 0.6),
    "ia3": (1e-1, 0.5),
    "partial": (3e-3, 0.6),
    "full": (3e-3, 0.6),
}


@pytest.fixture(scope="module")
def untuned_exact_match(capitals_file) -> float:
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.sweep import untuned_scores

    cfg = load_config(
        LlmConfig, None, {"data": str(capitals_file), "val_size": 8, "test_size": 24, "max_new_tokens": 6}
    )
    return untuned_scores(cfg)["test_exact_match"]


@pytest.mark.parametrize("method", list(FAMILIES))
def test_each_family_learns_the_capitals(tmp_path, capitals_file, untuned_exact_match, method):
    lr, threshold = FAMILIES[method]
    _, run = train_run(tmp_path / method, method, capitals_file, steps=40, lr=lr)
    score = exact_match_on_test(run)
    assert score >= threshold and score > untuned_exact_match
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_exact_match"] == score  # eval merged its numbers into metrics.json
    assert (run / "eval.json").is_file() and (run / "samples" / "test_predictions.jsonl").is_file()


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory, capitals_file, translate_file):
    root = tmp_path_factory.mktemp("compose")
    train_run(root / "a", "lora", capitals_file, steps=40, lr=3e-2)
    train_run(root / "b", "lora", translate_file, steps=40, lr=3e-2)
    return root


def test_composed_lora_does_both_tasks_and_negation_forgets(cli, two_tasks, capitals_file, translate_file):
    """Scored by the loss on the answers (exact match of a sum of two adapters on a random tiny model is 0)."""
    root = two_tasks

    def compose(name: str, *adapters: str) -> dict:
        args = [a for spec in adapters for a in ("--adapter", f"{root / spec}")]
        result = cli(
            "llm",
            "compose",
            "--base",
            "builtin:tiny-llama",
            *args,
            "--out",
            root / name,
            "--eval-data",
            capitals_file,
            "--eval-data",
            translate_file,
            "--max-new-tokens",
            "4",
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        out = json.loads(result.stdout)
        return {"a": out[f"{capitals_file}:loss"], "b": out[f"{translate_file}:loss"]}

    base = compose("untuned", "a:0.0")  # a zero-weight composition is the base model
    alone = compose("a-only", "a:1.0")
    both = compose("ab", "a:1.0", "b:1.0")
    forgot = compose("ab-a", "a:1.0", "b:1.0", "a:-1.0")
    assert alone["a"] < base["a"] - 2 and abs(alone["b"] - base["b"]) < 0.5
    assert both["a"] < base["a"] - 0.5 and both["b"] < base["b"] - 0.5  # multi-task by addition
    assert forgot["a"] > both["a"] + 0.5 and forgot["a"] > base["a"] - 1.0  # negation: A is forgotten
    assert forgot["b"] < base["b"] - 0.5  # while B is kept
    # the composed folder is an llm run: eval works on it
    assert exact_match_on_test(root / "a-only", capitals_file) >= 0.6


def test_generate_writes_before_and_after(cli, two_tasks):
    run = two_tasks / "a"
    result = cli(
        "llm",
        "generate",
        "--model",
        "builtin:tiny-llama",
        "--run",
        run,
        "--prompts-file",
        "examples/llm/probes.jsonl",
        "--prompt",
        "What is the capital of Iran?",
        "--max-new-tokens",
        "6",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["tuned"] == "Tehran" and rows[0]["untuned"] != "Tehran"
    assert any(any("\u0600" <= ch <= "\u06ff" for ch in r["prompt"]) for r in rows)  # Persian probes shipped
    assert "| What is the capital of Iran? |" in (run / "samples" / "before_after.md").read_text()
    assert len((run / "samples" / "before_after.jsonl").read_text().splitlines()) == len(rows)


def test_left_padded_batches_match_one_by_one(two_tasks, capitals_file):
    from dlkit.llm.evaluate import conversations_from
    from dlkit.llm.generate import generate, prompts_and_references
    from dlkit.llm.models import load_trained

    model, tokenizer, _ = load_trained(two_tasks / "b")
    prompts, _ = prompts_and_references(tokenizer, conversations_from("builtin:instruct", tokenizer)[:12])
    assert len({len(p) for p in prompts}) > 1
    assert generate(model, tokenizer, prompts, 8, batch_size=12) == generate(model, tokenizer, prompts, 8, batch_size=1)


def test_sweep_runs_a_grid_and_compares_every_run(cli, tmp_path, capitals_file):
    result = cli(
        "llm",
        "sweep",
        "--methods",
        "lora",
        "--grid",
        "rank=2,4",
        "--data",
        capitals_file,
        "--max-steps",
        "3",
        "--output-dir",
        tmp_path / "sweep",
        "--max-new-tokens",
        "4",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["run"], r["method"], r["rank"]) for r in rows] == [
        ("lora_rank=2", "lora", "2"),
        ("lora_rank=4", "lora", "4"),
    ]
    assert rows[1]["trainable_params"] == 2 * rows[0]["trainable_params"]  # LoRA's A and B grow with the rank
    assert all(r["val_loss"] is not None and r["split"] == "test" and "gain_exact_match" in r for r in rows)
    for row, rank in zip(rows, (2, 4), strict=True):  # each a normal run folder, with its own config and eval
        run = tmp_path / "sweep" / row["run"]
        assert json.loads((run / "config.json").read_text())["rank"] == rank and (run / "eval.json").is_file()
    assert (tmp_path / "sweep" / "comparison.png").stat().st_size > 1000
    table = (tmp_path / "sweep" / "comparison.md").read_text()
    assert table.startswith("| run | method | rank | train_seconds |") and "| lora_rank=4 | lora | 4 |" in table
    assert json.loads((tmp_path / "sweep" / "untuned.json").read_text())["test_exact_match"] is not None
    compared = cli("compare", tmp_path / "sweep", "--format", "json")
    assert compared.exit_code == 0 and "lora_rank=4" in compared.stdout


def test_sweep_grid_over_methods_and_a_bad_grid(cli, tmp_path):
    result = cli("llm", "sweep", "--grid", "method=lora,nope", "--output-dir", tmp_path)
    assert result.exit_code == 2 and "--method nope: unknown method" in result.stderr
    result = cli("llm", "sweep", "--grid", "rnak=2,4", "--output-dir", tmp_path)
    assert result.exit_code == 2 and "did you mean 'rank'?" in result.stderr


def test_unknown_sweep_method(cli, tmp_path):
    result = cli("llm", "sweep", "--methods", "lora,adapterx", "--output-dir", tmp_path)
    assert result.exit_code == 2 and "--methods adapterx: unknown method" in result.stderr
