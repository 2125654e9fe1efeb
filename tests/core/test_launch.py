"""The one-line warning when a launcher was asked for more processes than run (no process is started
here: the environment and the launcher's command line are given)."""

import pytest
from checks import one_line_error

from dlkit.core.launch import launch_warning

SIMPLE_LAUNCHER = {
    "ACCELERATE_MIXED_PRECISION": "no",
    "ACCELERATE_USE_CPU": "False",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}  # what accelerate's simple launcher exports: no WORLD_SIZE, no RANK
LAUNCHER = ["/venv/bin/python", "/venv/bin/accelerate", "launch"]
SCRIPT = ["-m", "dlkit", "charrnn", "train", "--name", "my run"]


def test_accelerate_launch_without_multi_gpu_names_the_command_that_starts_n():
    message = launch_warning(1, SIMPLE_LAUNCHER, [*LAUNCHER, "--num_processes", "2", *SCRIPT])
    assert "asked for 2 processes but started 1" in message and "\n" not in message
    assert message.endswith(
        "run: accelerate launch --multi_gpu --num_processes 2 -m dlkit charrnn train --name 'my run'"
    )


def test_hyphenated_flag_and_cpu_flag():
    message = launch_warning(1, SIMPLE_LAUNCHER, [*LAUNCHER, "--cpu", "--num-processes=3", *SCRIPT])
    assert "asked for 3 processes" in message
    assert "run: accelerate launch --multi_gpu --num-processes=3 -m dlkit" in message  # --cpu excludes --multi_gpu


def test_count_from_the_config_file(tmp_path):
    config = tmp_path / "one_machine.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 4\nmixed_precision: 'no'\n"
    )
    message = launch_warning(1, SIMPLE_LAUNCHER, [*LAUNCHER, "--config_file", str(config), *SCRIPT])
    assert "asked for 4 processes" in message and f"--config_file {config}" in message


@pytest.mark.parametrize(
    "env, argv, processes",
    [
        (SIMPLE_LAUNCHER, [*LAUNCHER, "--num_processes", "1", *SCRIPT], 1),  # one asked, one runs
        (SIMPLE_LAUNCHER, [*LAUNCHER, "--cpu", *SCRIPT], 1),  # no count asked for
        ({}, [*LAUNCHER, "--num_processes", "2", *SCRIPT], 1),  # not started by accelerate launch
        ({"WORLD_SIZE": "2", "RANK": "0"}, ["torchrun", "--nproc_per_node", "2", *SCRIPT], 2),  # torchrun, all joined
    ],
)
def test_no_warning_when_every_asked_process_runs(env, argv, processes):
    assert launch_warning(processes, env, argv) is None


def test_torchrun_processes_that_train_alone():
    message = launch_warning(1, {"WORLD_SIZE": "2", "RANK": "0"}, [])
    assert "2 processes were launched" in message and "each trains alone" in message


def test_deepspeed_and_megatron_launches_are_refused_in_one_line():
    from accelerate.utils import DistributedType

    from dlkit.core.launch import sharding_refusal

    for mode, name in ((DistributedType.DEEPSPEED, "DeepSpeed"), (DistributedType.MEGATRON_LM, "Megatron-LM")):
        message = sharding_refusal(mode)
        assert message.startswith(f"{name} is not supported") and "--sharding fsdp" in message and "\n" not in message
    # FSDP goes to dlkit's own FSDP2 path (dlkit.core.sharding)
    assert all(
        sharding_refusal(mode) is None
        for mode in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU, DistributedType.FSDP)
    )


def test_training_under_deepspeed_stops_before_the_first_step(cli, tmp_path, monkeypatch):
    """Accelerate turns DeepSpeed on only with GPUs; here the engine's accelerator reports it as it would there."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType.DEEPSPEED))
    result = cli("charrnn", "train", "--max-steps", "2", "--output-dir", tmp_path / "run")
    one_line_error(result, "DeepSpeed is not supported", "--sharding fsdp")
    assert not list((tmp_path / "run").glob("checkpoints/*"))
