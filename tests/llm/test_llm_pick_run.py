"""`dlkit llm eval --method lora` and `llm generate --method lora`: the newest finished run of that method."""

from __future__ import annotations

import json

from llm_helpers import train_run


def test_method_picks_the_newest_finished_run(cli, tmp_path, monkeypatch, capitals_file):
    monkeypatch.chdir(tmp_path)
    train_run(tmp_path / "runs/llm/older", "lora", capitals_file, steps=1)
    train_run(tmp_path / "runs/llm/newer", "lora", capitals_file, steps=1)
    train_run(tmp_path / "runs/llm/ia3", "ia3", capitals_file, steps=1)
    unfinished = tmp_path / "runs/llm/crashed"
    unfinished.mkdir()
    config = json.loads((tmp_path / "runs/llm/newer/config.json").read_text())
    config["_dlkit"]["created"] = "9999-01-01T00:00:00"  # newest of all, but it never finished
    (unfinished / "config.json").write_text(json.dumps(config))

    result = cli("--json", "llm", "eval", "--method", "lora", "--limit", "2", "--max-new-tokens", "2")
    assert result.exit_code == 0, result.stderr
    assert "runs/llm/newer" in result.stderr and json.loads(result.stdout)["test_examples"] == 2
    assert (tmp_path / "runs/llm/newer/eval.json").is_file() and not (tmp_path / "runs/llm/older/eval.json").exists()

    result = cli(
        "llm", "generate", "--method", "ia3", "--prompt", "What is the capital of Iran?", "--max-new-tokens", "2"
    )
    assert result.exit_code == 0, result.stderr
    assert "runs/llm/ia3" in result.stderr and (tmp_path / "runs/llm/ia3/samples/before_after.md").is_file()

    missing = cli("llm", "eval", "--method", "dora")
    assert missing.exit_code == 2 and "no finished llm run with method dora under runs/llm" in missing.stderr
    both = cli("llm", "eval", "--method", "lora", "--run", "runs/llm/older")
    assert both.exit_code == 2 and "not both" in both.stderr
    neither = cli("llm", "eval")
    assert neither.exit_code == 2 and "--run DIR" in neither.stderr
