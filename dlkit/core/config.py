"""Typed configs: dataclass defaults, then a --config file, then command-line flags.

Every group's config is a dataclass that extends `TrainConfig`. Fields carry their help text in
`metadata`, so the CLI, the config-file checker and the saved `config.json` all read one definition.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from dlkit.core.errors import ConfigError

C = TypeVar("C")

META_KEY = "_dlkit"  # provenance block inside a saved config.json; ignored when loading


def opt(default: Any, help: str, *, cli: bool = True, saved: bool = True, resume_safe: bool = False) -> Any:
    """A config field with its --help text. `cli=False` hides it from flags; `saved=False` from config.json;
    `resume_safe=True` lets --resume change it (it alters neither the batch plan nor the model)."""
    return field(default=default, metadata={"help": help, "cli": cli, "saved": saved, "resume_safe": resume_safe})


@dataclass(kw_only=True)
class RunOutput:
    """The run-folder fields `Run.create` reads, for a command that writes a run folder but does not train
    (a comparison, an evaluation sweep). Keyword-only, so a subclass may start with fields of its own."""

    output_dir: str | None = opt(None, "Output folder. Default: runs/GROUP/NAME.")
    name: str | None = opt(None, "Name under runs/GROUP/. Default: derived from the command and the time.")
    overwrite: bool = opt(False, "Replace an existing output folder (only a folder dlkit wrote).", saved=False)
    resume: bool = opt(False, "Unused: there is nothing to resume.", cli=False, saved=False)


@dataclass
class TrainConfig:
    """What every `train` command shares (DESIGN.md 1b). Groups subclass it and add their own fields."""

    data: str = opt("builtin:regression", "Dataset: builtin:NAME, a local path, or a Hub dataset id.")
    model: str = opt("builtin:mlp", "Model: builtin:NAME, a local save_pretrained folder, or a Hub id.")
    output_dir: str | None = opt(None, "Run folder. Default: runs/GROUP/NAME.", resume_safe=True)
    name: str | None = opt(None, "Run name under runs/GROUP/. Default: derived from the method and time.",
                           resume_safe=True)
    seed: int = opt(0, "Seed for init, data order and dropout.")
    epochs: int = opt(3, "Passes over the training set.", resume_safe=True)
    max_steps: int | None = opt(None, "Stop after this many optimizer steps; overrides --epochs.", resume_safe=True)
    batch_size: int = opt(16, "Examples per micro-batch per process.")
    grad_accum: int = opt(1, "Micro-batches per optimizer step (effective batch = batch * accum * processes).")
    lr: float = opt(3e-4, "Peak learning rate.")
    weight_decay: float = opt(0.0, "AdamW/SGD weight decay, applied to weights with >= 2 dims only.")
    optimizer: Literal["adamw", "sgd"] = opt("adamw", "Optimizer.")
    scheduler: Literal["constant", "linear", "cosine", "step"] = opt("linear", "Learning-rate schedule after warmup.")
    step_size: int = opt(0, "--scheduler step: multiply the lr by --gamma every N steps (0 = a third of the run).")
    gamma: float = opt(0.1, "--scheduler step: the factor applied every --step-size steps.")
    warmup: float = opt(0.0, "Warmup: a fraction of the total steps if < 1, else a number of steps.")
    max_grad_norm: float = opt(1.0, "Clip gradients to this norm; 0 turns clipping off.")
    precision: Literal["no", "bf16", "fp16"] = opt("no", "Mixed precision (fp16 needs CUDA).")
    eval_every: int = opt(0, "Evaluate every N optimizer steps; 0 = at the end of each epoch.", resume_safe=True)
    save_every: int = opt(0, "Checkpoint every N optimizer steps; 0 = at the end of each epoch.", resume_safe=True)
    keep_last: int = opt(2, "Checkpoints to keep (older ones are deleted).", resume_safe=True)
    log_every: int = opt(10, "Write a history line every N optimizer steps.", resume_safe=True)
    report_to: str = opt("none", "Also send the history's scalars, the config and the final metrics to "
                         "experiment trackers: none, or a comma-separated list of tensorboard (RUN/tensorboard), "
                         "wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio.", resume_safe=True)
    push_to_hub: str | None = opt(None, "Upload the final model folder, with its model card, to this Hub repository "
                                  "(NAMESPACE/NAME) at the end; refused before training when the Hub cannot be "
                                  "reached or no token is set.", resume_safe=True)
    early_stop_patience: int = opt(0, "Stop after N evaluations without improvement; 0 = never.", resume_safe=True)
    monitor: str = opt("val_loss", "Eval metric that early stopping and 'best' follow.")
    monitor_mode: Literal["min", "max"] = opt("min", "Whether a lower or a higher --monitor is better.")
    divergence_factor: float = opt(10.0, "Stop when the smoothed training loss exceeds N x its best smoothed value "
                                   "(status diverged; the newest good checkpoint is named and kept); 0 = never.",
                                   resume_safe=True)
    nan_policy: Literal["stop", "skip"] = opt("stop", "On a non-finite loss: stop (status diverged; the newest good "
                                              "checkpoint is named and kept) or skip the step.", resume_safe=True)
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward to save memory.")
    num_workers: int = opt(0, "DataLoader worker processes (0 = load in the main process).", resume_safe=True)
    resume: bool = opt(False, "Continue the run in --output-dir from its last checkpoint.", saved=False)
    overwrite: bool = opt(False, "Replace an existing run folder.", saved=False)
    command_line: list[str] | None = opt(None, "The command line that started this run, set by the CLI "
                                         "(recorded in config.json and used in the resume hint).",
                                         cli=False, saved=False)

    def validate(self) -> None:
        """Reject values no run can use, naming the flag."""
        positive = ["epochs", "batch_size", "grad_accum", "lr", "keep_last", "log_every"]
        for name in positive:
            _check(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        if self.max_steps is not None:
            _check(self.max_steps > 0, "max_steps", "must be > 0", self.max_steps)
        non_negative = ["weight_decay", "warmup", "step_size", "gamma", "num_workers", "max_grad_norm", "eval_every",
                        "save_every", "early_stop_patience", "divergence_factor"]
        for name in non_negative:
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        from dlkit.core.trackers import check_installed, tracker_names

        check_installed(tracker_names(self.report_to))
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pass one of them")



@dataclass
class ShardingConfig(TrainConfig):
    """TrainConfig plus the sharding flags, for the `train` commands whose models can outgrow one GPU."""

    sharding: Literal["none", "fsdp"] = opt("none", "none: every process holds the whole model (DDP under torchrun); "
                                            "fsdp: parameters, gradients and optimizer state sharded over the "
                                            "processes, one transformer block at a time (torch FSDP2).")
    cpu_offload: bool = opt(False, "--sharding fsdp: keep the shards, gradients and optimizer state in CPU memory "
                            "(the optimizer steps on the CPU): slower, for shards that do not fit the GPUs.",
                            resume_safe=True)

    def validate(self) -> None:
        super().validate()
        if self.cpu_offload and self.sharding != "fsdp":
            raise ConfigError("--cpu-offload needs --sharding fsdp (it offloads the shards)")

def _check(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"--{flag_name(name)} {what} (got {value!r})")


def flag_name(field_name: str) -> str:
    return field_name.replace("_", "-")


def config_fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Field name -> (field, resolved type) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping, with one-line errors for the usual mistakes."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def coerce(name: str, value: Any, tp: Any, where: str) -> Any:
    """Check one value against a field type; convert where it is lossless (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(name, value, args[0], where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {name!r} must be one of {', '.join(map(str, choices))} (got {value!r})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name!r} must be true or false (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name!r} must be a number (got {value!r})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name!r} must be an integer (got {value!r})")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: {name!r} must be a string (got {value!r})")
        return str(value)
    return value


def load_config(cls: type[C], file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Defaults, then the file (YAML/JSON), then explicit flags; validated."""
    known = config_fields(cls)
    values: dict[str, Any] = {}
    if file is not None:
        where = f"config file {Path(file).expanduser()}"
        for raw_key, value in read_config_file(file).items():
            if raw_key == META_KEY:
                continue
            key = str(raw_key).replace("-", "_")
            if key not in known:
                raise ConfigError(f"{where}: unknown key {raw_key!r}; {suggestion(key, known)}")
            values[key] = coerce(key, value, known[key][1], where)
    values.update(overrides or {})
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def suggestion(key: str, known: dict[str, Any]) -> str:
    """'did you mean X?' for a mistyped key, else the valid keys."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    return "valid keys: " + ", ".join(sorted(known))


def saved_dict(cfg: Any) -> dict[str, Any]:
    """The config as written to config.json (fields marked saved=False left out)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("saved", True):
            out[f.name] = getattr(cfg, f.name)
    return out


def resume_changes(saved: dict[str, Any], cfg: Any) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """(refused, allowed): the keys whose value differs between a run's saved config.json and `cfg`, each
    as (old, new). A key is allowed only when its field is marked resume_safe (cadence, length of the
    run); everything else may change the batch plan or the model, so resuming with it is refused.
    Keys the saved config lacks (written by an older dlkit) are not compared."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    refused: dict[str, tuple[Any, Any]] = {}
    allowed: dict[str, tuple[Any, Any]] = {}
    for key, new in saved_dict(cfg).items():
        if key not in saved:
            continue
        old = saved[key]
        if _normalise(old) == _normalise(new):
            continue
        target = allowed if fields[key].metadata.get("resume_safe", False) else refused
        target[key] = (old, new)
    return refused, allowed


def _normalise(value: Any) -> Any:
    """Compare as config.json stores it (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def named_in(spec: str, available: list[str], flag: str, where: str) -> list[str]:
    """The comma-separated names of `spec`, each one of `available` (e.g. --target-modules against a model's
    layers); otherwise one ConfigError naming the unknown ones and every candidate."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"{flag} {','.join(unknown)}: {where}; candidates: {', '.join(available)}")
    return names


def shared(name: str, default: Any) -> Any:
    """A TrainConfig field that a group re-declares with its own default; the --help text stays the one
    TrainConfig declares, so it is written once."""
    return field(default=default, metadata=dict(TrainConfig.__dataclass_fields__[name].metadata))
