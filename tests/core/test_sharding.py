"""dlkit.core.sharding in one process: an `accelerate launch` FSDP config mapped onto --sharding fsdp (or refused
in one line), the validation batches every process runs the same number of, the blocks found to shard, and the
whole model's memory handed back once FSDP holds the shards. The training runs are in
tests/e2e/test_sharded_training.py."""

from __future__ import annotations

import pytest

from dlkit.core import sharding
from dlkit.core.config import ShardingConfig, TrainConfig
from dlkit.core.errors import ConfigError, DataError

FSDP = {"ACCELERATE_USE_FSDP": "true"}


def test_no_launcher_config_keeps_the_flags():
    cfg = ShardingConfig(sharding="fsdp", cpu_offload=True)
    assert sharding.from_launcher(cfg, {}) == (cfg, sharding.FsdpSettings(cpu_offload=True))
    assert sharding.from_launcher(ShardingConfig(), {}) == (ShardingConfig(), None)
    assert sharding.from_launcher(TrainConfig(), {}) == (TrainConfig(), None)


def test_an_accelerate_fsdp_config_becomes_sharding_fsdp_with_its_settings():
    env = {
        **FSDP,
        "FSDP_OFFLOAD_PARAMS": "true",
        "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP",
        "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer, LlamaMLP",
        "FSDP_ACTIVATION_CHECKPOINTING": "true",
    }
    cfg, settings = sharding.from_launcher(ShardingConfig(), env)
    assert (cfg.sharding, cfg.cpu_offload, cfg.gradient_checkpointing) == ("fsdp", True, True)
    assert settings == sharding.FsdpSettings(
        cpu_offload=True, reshard_after_forward=False, block_classes=("LlamaDecoderLayer", "LlamaMLP")
    )
    # FSDP2 configs say it with fsdp_reshard_after_forward; NO_WRAP makes the whole model one unit
    env = {**FSDP, "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false", "FSDP_AUTO_WRAP_POLICY": "NO_WRAP"}
    cfg, settings = sharding.from_launcher(ShardingConfig(), env)
    assert cfg.sharding == "fsdp" and not cfg.cpu_offload
    assert settings == sharding.FsdpSettings(reshard_after_forward=False, one_unit=True)


@pytest.mark.parametrize(
    "env, cfg, fragment",
    [
        ({**FSDP, "FSDP_SHARDING_STRATEGY": "NO_SHARD"}, ShardingConfig(), "fsdp_sharding_strategy NO_SHARD"),
        ({**FSDP, "FSDP_SHARDING_STRATEGY": "4"}, ShardingConfig(), "fsdp_sharding_strategy HYBRID_SHARD"),
        ({**FSDP, "FSDP_AUTO_WRAP_POLICY": "SIZE_BASED_WRAP"}, ShardingConfig(), "fsdp_auto_wrap_policy SIZE_BASED"),
        (FSDP, TrainConfig(), "does not shard its model"),  # charrnn, caption, clip: DDP only
    ],
)
def test_what_the_fsdp2_path_cannot_do_is_refused_in_one_line(env, cfg, fragment):
    with pytest.raises(ConfigError) as error:
        sharding.from_launcher(cfg, env)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_fp16_is_refused_under_sharding():
    with pytest.raises(ConfigError, match="--precision bf16"):
        sharding.check_precision("fp16")
    sharding.check_precision("bf16")


def test_cpu_offload_needs_fsdp(cli):
    from checks import one_line_error

    one_line_error(cli("llm", "train", "--cpu-offload"), "--cpu-offload needs --sharding fsdp")


def test_groups_without_sharding_have_no_flag(cli):
    result = cli("charrnn", "train", "--sharding", "fsdp")
    assert result.exit_code == 2 and "No such option" in result.stderr


@pytest.mark.parametrize("size", [2, 3, 5, 16, 17, 31])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_every_process_runs_as_many_eval_batches_and_every_example_once(size, world, batch_size):
    if size < world:
        return
    plans = [sharding.eval_batches(size, world, rank, batch_size) for rank in range(world)]
    assert len({len(plan) for plan in plans}) == 1  # one forward per batch: a collective each under FSDP
    scored = sorted(i for plan in plans for batch in plan for i in batch)
    assert scored == list(range(size)) and all(plan and all(plan) for plan in plans)
    # --batch-size 1 on a set that does not divide evenly: some process scores two examples in one batch
    assert max(len(b) for plan in plans for b in plan) <= max(batch_size, 2 if size % world else 1)


def test_a_validation_set_smaller_than_the_processes_is_refused():
    with pytest.raises(DataError, match=r"validation set \(1 examples\) is smaller than the 2 processes"):
        sharding.eval_batches(1, 2, 0, 4)


def test_the_blocks_are_the_transformer_layers_also_inside_wrappers():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering

    from dlkit.builtin import BUILTINS
    from dlkit.qa.models import SpanQA

    llama = get_peft_model(
        AutoModelForCausalLM.from_pretrained(BUILTINS["tiny-llama"].load()), LoraConfig(r=2, target_modules=["q_proj"])
    )
    assert [type(b).__name__ for b in sharding.transformer_blocks(llama)] == ["LlamaDecoderLayer"] * 6
    qa = SpanQA(AutoModelForQuestionAnswering.from_pretrained(BUILTINS["tiny-bert"].load()), 0.0)
    names = [type(b).__name__ for b in sharding.transformer_blocks(qa)]
    assert names[0] == "BertEmbeddings" and set(names[1:]) == {"BertLayer"} and len(names) > 2


def test_once_sharded_the_whole_parameters_are_let_go():
    """FSDP copies each process's shard; the Task may still hold the whole parameters (llm's snapshot of the
    base), which would keep a full copy on every process."""
    import torch
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    from dlkit.builtin import BUILTINS

    sharding.init_process_group(cuda=False)
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BUILTINS["tiny-llama"].load())
    held = list(model.parameters())  # a Task's references
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    shards = sharding.Sharded(
        model, sharding.transformer_blocks(model), sharding.FsdpSettings(), "no", torch.device("cpu"), main=True
    )
    assert all(p.numel() == 0 for p in held)
    with shards.gathered() as full:
        assert full is not model and [id(p) for p in full.parameters()] == [id(p) for p in held]
        for name, p in full.named_parameters():
            torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    assert all(p.numel() == 0 for p in held)
