"""How many processes the launcher was asked for, and one warning line when fewer run; the launch modes
dlkit refuses (DeepSpeed, Megatron-LM).

torchrun and `accelerate launch --multi_gpu` export WORLD_SIZE to every process. `accelerate launch
--num_processes N` without --multi_gpu on a machine without several GPUs uses Accelerate's simple
launcher instead: it starts ONE process and passes the count on to nobody (it only sets MASTER_ADDR and
ACCELERATE_* variables), so the count is read back from the launcher's own command line, with
Accelerate's own argument parser and config file reader.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

SHARDED = {"DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}  # accelerate's DistributedType


def sharding_refusal(distributed_type: str) -> str | None:
    """Why dlkit cannot train under `distributed_type` (accelerate's DistributedType value), else None.
    DeepSpeed and Megatron-LM take over the model, optimizer and checkpoints inside their own engines, which
    dlkit's loop does not drive: under ZeRO-3 or model parallelism the main process would save the final model
    and draw eval samples from its partition alone, waiting forever for the others. (FSDP launches are not
    refused: dlkit maps them onto its own FSDP2 path, dlkit.core.sharding.)"""
    name = SHARDED.get(str(getattr(distributed_type, "value", distributed_type)))
    if name is None:
        return None
    return (
        f"{name} is not supported: dlkit's engine does not drive {name}'s own model, optimizer and checkpoint "
        "handling; to shard the model use --sharding fsdp (torch FSDP2, also through an accelerate FSDP "
        f"config), or launch without {name} (DDP: torchrun, or accelerate launch --multi_gpu)"
    )


def launch_warning(
    num_processes: int, environ: dict[str, str] | None = None, launcher_argv: list[str] | None = None
) -> str | None:
    """The warning to print when the launch asked for more processes than `num_processes`, else None.
    `launcher_argv` is the parent process's command line (read from /proc when not given)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "0") or 0)
    if world:
        if world > num_processes:
            return (
                f"{world} processes were launched (WORLD_SIZE={world}) but they did not join one process "
                f"group: each trains alone on {num_processes}; check the launcher's rendezvous settings"
            )
        return None
    if "ACCELERATE_MIXED_PRECISION" not in env:  # not started by accelerate launch
        return None
    argv = _parent_argv() if launcher_argv is None else launcher_argv
    if "launch" not in argv:
        return None
    launch_args = argv[argv.index("launch") + 1 :]
    asked = _asked_processes(launch_args)
    if asked <= num_processes:
        return None
    fixed = ["accelerate", "launch", "--multi_gpu", *[a for a in launch_args if a != "--cpu"]]
    return (
        f"accelerate launch was asked for {asked} processes but started {num_processes} (on a machine "
        f"without several GPUs it needs --multi_gpu); for {asked} processes run: {shlex.join(fixed)}"
    )


def _asked_processes(launch_args: list[str]) -> int:
    """--num_processes from the flags, else from --config_file or Accelerate's default config file."""
    from accelerate.commands.launch import launch_command_parser

    try:
        args = launch_command_parser().parse_args(launch_args)
    except SystemExit:  # not a command line accelerate understands
        return 1
    if args.num_processes is not None:
        return int(args.num_processes)
    from accelerate.commands.config.config_args import default_config_file, load_config_from_file

    if args.config_file is None and (args.cpu or not Path(default_config_file).is_file()):
        return 1
    try:
        return int(getattr(load_config_from_file(args.config_file), "num_processes", None) or 1)
    except (OSError, ValueError, TypeError):
        return 1


def _parent_argv() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:  # not Linux, or no permission: nothing to check
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
