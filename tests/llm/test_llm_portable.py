"""A trained adapter travels: copied to a new folder on a machine with an empty dlkit cache, it loads with plain
transformers + PEFT (no dlkit import on the loading side) and gives the run's own logits."""

from __future__ import annotations

import json
import shutil

import torch
from checks import one_line_error
from llm_helpers import train_run


def test_adapter_copied_elsewhere_loads_with_plain_peft(cli, tmp_path, capitals_file, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dlkit.builtin import BUILTINS
    from dlkit.llm.models import load_trained

    _, run = train_run(tmp_path / "run", "lora", capitals_file, steps=3, lr=5e-2)
    model, tokenizer, info = load_trained(run)
    ids = tokenizer(["What is the capital of Iran?"], return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model(ids).logits

    built_here = str(BUILTINS["tiny-llama"].load())
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    adapter = moved / "checkpoints" / "final"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == built_here  # what plain PEFT resolves on the training machine
    card = (adapter / "README.md").read_text()
    assert str(tmp_path) not in card and built_here not in card and "builtin:tiny-llama" in card

    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "new-cache"))  # another machine: the builtin is rebuilt
    assert info["base_rebuild"].startswith("python -c")
    base_folder = BUILTINS["tiny-llama"].load()
    assert str(tmp_path / "new-cache") in str(base_folder)
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), str(adapter)).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, expected, rtol=1e-5, atol=1e-5)

    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for overwrite in ([], ["--overwrite"]):
        refused = cli("llm", "export", "--run", moved, "--out", mine, *overwrite)
        assert refused.exit_code == 2 and "holds files dlkit did not write (keep.txt)" in refused.stderr
    assert (mine / "keep.txt").read_text() == "mine"
    refused = cli("llm", "export", "--run", moved, "--out", mine / "keep.txt")  # a file, not a folder
    assert refused.exit_code == 2 and "is a file, not a folder" in refused.stderr
    assert (mine / "keep.txt").read_text() == "mine"
    assert cli("llm", "export", "--run", moved, "--out", tmp_path / "out" / "merged", "--merge").exit_code == 0
    one_line_error(
        cli("llm", "export", "--run", moved, "--out", tmp_path / "out" / "merged", "--merge"),
        "already exists; pass --overwrite",
    )
    assert (
        cli("llm", "export", "--run", moved, "--out", tmp_path / "out" / "merged", "--merge", "--overwrite").exit_code
        == 0
    )
    listed = json.loads(cli("runs", "list", tmp_path / "out", "--format", "json").stdout)
    assert listed == [{"run": "merged", "group": "llm", "method": "lora", "status": "export", "created": ""}]
