"""Real dataset layouts: self-instruct task files (nested instances), and the coloured token view of
`llm prepare` decoding whole spans so Persian letters split across tokens print intact."""

from __future__ import annotations

import json

from dlkit.llm.data import load_rows

TASK_FA = {
    "id": "task001",
    "definition": ["به پرسش درباره‌ی غذا پاسخ بده."],
    "instances": [
        {"input": "تخم‌مرغ چه نوع غذایی است؟", "output": ["پروتئین‌دار"]},
        {"input": "عدس چه نوع غذایی است؟", "output": ["پروتئین‌دار"]},
        {"input": "برنج چه نوع غذایی است؟", "output": ["نشاسته‌ای"]},
    ],
}
TASK_EN = {
    "instruction": "Name the capital.",
    "instances": [{"input": f"Country {i}", "output": f"City {i}"} for i in range(9)],
}


def test_self_instruct_tasks_become_one_row_per_instance(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "task001_food.json").write_text(json.dumps(TASK_FA, ensure_ascii=False), encoding="utf-8")
    (folder / "task002_capitals.json").write_text(json.dumps(TASK_EN), encoding="utf-8")
    rows, _ = load_rows(str(folder))
    assert len(rows) == 12
    assert rows[0] == {
        "instruction": "به پرسش درباره‌ی غذا پاسخ بده.",
        "input": "تخم‌مرغ چه نوع غذایی است؟",
        "output": "پروتئین‌دار",
    }
    assert rows[5] == {"instruction": "Name the capital.", "input": "Country 2", "output": "City 2"}
    jsonl = tmp_path / "tasks.jsonl"  # the same tasks, one JSON object per line
    jsonl.write_text(json.dumps(TASK_FA, ensure_ascii=False) + "\n" + json.dumps(TASK_EN) + "\n", encoding="utf-8")
    assert load_rows(str(jsonl))[0] == rows


def test_prepare_and_train_on_self_instruct_with_intact_persian(cli, tmp_path):
    data = tmp_path / "task.json"
    task = {**TASK_FA, "instances": TASK_FA["instances"] * 4}
    data.write_text(json.dumps(task, ensure_ascii=False), encoding="utf-8")
    result = cli(
        "llm",
        "prepare",
        "--data",
        data,
        "--val-size",
        "2",
        "--test-size",
        "2",
        "--samples",
        "0",
        "--output-dir",
        tmp_path / "prep",
    )
    assert result.exit_code == 0, result.stderr
    view = result.stderr.split("trained-on tokens")[1]
    assert "پروتئین‌دار" in view or "نشاسته‌ای" in view
    assert "\ufffd" not in view  # single-token decoding printed U+FFFD inside 'پروتئین'
    stats = json.loads((tmp_path / "prep/stats.json").read_text())
    assert stats["format"] == "alpaca" and stats["conversations"] == 12
    result = cli(
        "llm",
        "train",
        "--data",
        data,
        "--max-steps",
        "1",
        "--val-size",
        "2",
        "--test-size",
        "2",
        "--output-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.stderr


def public_self_instruct(tasks: int = 3, per_task: int = 8) -> list[dict]:
    """The public Persian self-instruct layout: a list of tasks whose instances carry their own instruction
    (no task-level one); a quarter of the instances have no input."""
    return [
        {
            "id": f"seed_task_{t}",
            "name": f"task {t}",
            "is_classification": False,
            "instances": [
                {
                    "instruction": f"پایتخت کشور شماره‌ی {t * per_task + i} را بگو.",
                    "input": "" if i % 4 == 0 else f"کشور {t * per_task + i}",
                    "output": f"شهر {t * per_task + i}",
                }
                for i in range(per_task)
            ],
        }
        for t in range(tasks)
    ]


def test_each_instance_keeps_its_own_instruction(cli, tmp_path):
    data = tmp_path / "persian_seed_tasks.json"
    data.write_text(json.dumps(public_self_instruct(), ensure_ascii=False), encoding="utf-8")
    rows, _ = load_rows(str(data))
    assert len(rows) == 24 and rows[8] == {
        "instruction": "پایتخت کشور شماره‌ی 8 را بگو.",
        "input": "",
        "output": "شهر 8",
    }
    result = cli(
        "llm",
        "prepare",
        "--data",
        data,
        "--val-size",
        "2",
        "--test-size",
        "2",
        "--samples",
        "0",
        "--output-dir",
        tmp_path / "prep",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["empty_turn"] == 0 and json.loads(result.stdout)["conversations"] == 24
    users = [
        json.loads(line)["messages"][0]["content"]
        for line in (tmp_path / "prep/train.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert all(u.startswith("پایتخت کشور شماره‌ی") for u in users)


def test_a_task_level_instruction_fills_instances_without_one(tmp_path):
    task = {
        "definition": ["Name the capital."],
        "instances": [
            {"instruction": "", "input": "Iran", "output": "Tehran"},
            {"input": "Peru", "output": "Lima"},
            {"instruction": "Say it twice.", "input": "Chile", "output": "Santiago Santiago"},
        ],
    }
    (tmp_path / "t.json").write_text(json.dumps(task), encoding="utf-8")
    rows, _ = load_rows(str(tmp_path / "t.json"))
    assert [r["instruction"] for r in rows] == ["Name the capital.", "Name the capital.", "Say it twice."]


def test_many_empty_turns_are_refused_naming_the_field_and_row(cli, tmp_path):
    rows = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(40)]
    rows[6] = {"instruction": "", "input": " ", "output": "6"}
    data = tmp_path / "a.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    args = ("--val-size", "4", "--test-size", "4", "--samples", "0")
    one = cli("llm", "prepare", "--data", data, *args, "--output-dir", tmp_path / "one", "--json")
    assert one.exit_code == 0, one.stderr  # 1 of 40 (2.5%): skipped and counted
    assert json.loads(one.stdout)["empty_turn"] == 1 and json.loads(one.stdout)["conversations"] == 39
    assert "skipped 1 of 40 rows with an empty user or assistant turn (first: row 7" in one.stderr
    trained = cli("llm", "train", "--data", data, *args[:4], "--max-steps", "1", "--output-dir", tmp_path / "run")
    assert trained.exit_code == 0, trained.stderr
    assert json.loads((tmp_path / "run/metrics.json").read_text())["empty_turn"] == 1
    rows[20] = {"instruction": "Say 20.", "input": "", "output": ""}
    rows[30] = {"instruction": "", "input": "", "output": "30"}
    data.write_text(json.dumps(rows), encoding="utf-8")
    for command in ("prepare", "train"):
        result = cli("llm", command, "--data", data, *args[:4], "--output-dir", tmp_path / f"bad-{command}")
        assert result.exit_code == 2, result.stderr
        assert (
            "3 of 40 rows (8%) have an empty user or assistant turn (first: row 7, fields 'instruction' and 'input')"
        ) in result.stderr.strip().splitlines()[-1]
