"""Real dataset layouts: self-instruct task files (nested instances), and the coloured token view of
`llm prepare` decoding whole spans so Persian letters split across tokens print intact."""

from __future__ import annotations

import json

from dlkit.llm.data import load_rows

TASK_FA = {"id": "task001", "definition": ["به پرسش درباره‌ی غذا پاسخ بده."], "instances": [
    {"input": "تخم‌مرغ چه نوع غذایی است؟", "output": ["پروتئین‌دار"]},
    {"input": "عدس چه نوع غذایی است؟", "output": ["پروتئین‌دار"]},
    {"input": "برنج چه نوع غذایی است؟", "output": ["نشاسته‌ای"]},
]}
TASK_EN = {"instruction": "Name the capital.", "instances": [{"input": f"Country {i}", "output": f"City {i}"}
                                                             for i in range(9)]}


def test_self_instruct_tasks_become_one_row_per_instance(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "task001_food.json").write_text(json.dumps(TASK_FA, ensure_ascii=False), encoding="utf-8")
    (folder / "task002_capitals.json").write_text(json.dumps(TASK_EN), encoding="utf-8")
    rows, _ = load_rows(str(folder))
    assert len(rows) == 12
    assert rows[0] == {"instruction": "به پرسش درباره‌ی غذا پاسخ بده.", "input": "تخم‌مرغ چه نوع غذایی است؟",
                       "output": "پروتئین‌دار"}
    assert rows[5] == {"instruction": "Name the capital.", "input": "Country 2", "output": "City 2"}
    jsonl = tmp_path / "tasks.jsonl"  # the same tasks, one JSON object per line
    jsonl.write_text(json.dumps(TASK_FA, ensure_ascii=False) + "\n" + json.dumps(TASK_EN) + "\n", encoding="utf-8")
    assert load_rows(str(jsonl))[0] == rows


def test_prepare_and_train_on_self_instruct_with_intact_persian(cli, tmp_path):
    data = tmp_path / "task.json"
    task = {**TASK_FA, "instances": TASK_FA["instances"] * 4}
    data.write_text(json.dumps(task, ensure_ascii=False), encoding="utf-8")
    result = cli("llm", "prepare", "--data", data, "--val-size", "2", "--test-size", "2", "--samples", "0",
                 "--output-dir", tmp_path / "prep")
    assert result.exit_code == 0, result.stderr
    view = result.stderr.split("trained-on tokens")[1]
    assert "پروتئین‌دار" in view or "نشاسته‌ای" in view
    assert "\ufffd" not in view  # single-token decoding printed U+FFFD inside 'پروتئین'
    stats = json.loads((tmp_path / "prep/stats.json").read_text())
    assert stats["format"] == "alpaca" and stats["conversations"] == 12
    result = cli("llm", "train", "--data", data, "--max-steps", "1", "--val-size", "2", "--test-size", "2",
                 "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
