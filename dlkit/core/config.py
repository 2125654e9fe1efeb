"""Typed configs: dataclass defaults, then a --config file, then command-line flags.

Every command's settings are one dataclass (a `train` one extends `TrainConfig`). Fields carry their help text
and their checks in `metadata` (`opt`), so the CLI, the config-file checker, a notebook and the saved
`config.json` all read one definition; `checked` is what every command does with its config first.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from dlkit.core.errors import ConfigError
from dlkit.core.outputs import META_KEY as META_KEY  # provenance block in a saved config.json; ignored when loading

if TYPE_CHECKING:
    from dlkit.core.outputs import Claim

C = TypeVar("C")

REQUIRED: Any = ...  # opt(REQUIRED, ...): a field without a default; the CLI and load_config name it when missing

# What a path-like field holds, for the output policy, the run defaults and the command-contract test:
PathRole = Literal[
    "output", "output_file", "run", "data", "model", "file", "text_or_file", "folder", "image", "weights"
]


def opt(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: Sequence[str] | None = None,
    flags: Sequence[str] = (),
    argument: bool = False,
    path: PathRole | None = None,
    run_of: str | None = None,
    from_run: str | None = None,
    run_bound: bool = False,
    example: str | None = None,
    cli: bool = True,
    saved: bool = True,
    resume_safe: bool = False,
) -> Any:
    """A config field with its --help text and its checks, declared once for the CLI, --config files and Python.

    `min`/`max` bound a number inclusively, `above`/`below` exclusively; `choices` lists the allowed values (of
    each item, for a list). `flags` replaces the derived --flag-name (aliases, short forms); `argument` makes it
    positional. `path` says what a path-like value holds (see PathRole): an "output" folder goes through the
    output policy before any work, a "run" of group `run_of` gives the fields marked `from_run=KEY` its saved KEY
    when they are left out, and a `run_bound` one may not contradict it. `example` is a value that works offline
    (shown in errors and used by the command-contract test; "{run}" stands for a run folder).
    `cli=False` hides it from flags; `saved=False` from config.json; `resume_safe=True` lets --resume change it
    (it alters neither the batch plan nor the model)."""
    metadata = {
        "help": help,
        "cli": cli,
        "saved": saved,
        "resume_safe": resume_safe,
        "min": min,
        "max": max,
        "above": above,
        "below": below,
        "choices": tuple(choices) if choices else None,
        "flags": tuple(flags),
        "argument": argument,
        "path": path,
        "run_of": run_of,
        "from_run": from_run,
        "run_bound": run_bound,
        "example": example,
    }
    if default is REQUIRED:
        return field(kw_only=True, metadata=metadata)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def run_field(group: str, help: str | None = None, required: bool = True, **kw: Any) -> Any:
    """The --run option of a command that reads a run of `group` (eval, predict, sample, generate...)."""
    text = help or f"A run folder written by `dlkit {group} train`."
    return opt(REQUIRED if required else None, text, path="run", run_of=group, example="{run}", **kw)


@dataclass(kw_only=True)
class RunOutput:
    """The run-folder fields `Run.create` reads, for a command that writes a run folder but does not train
    (a comparison, an evaluation sweep). Keyword-only, so a subclass may start with fields of its own."""

    output_dir: str | None = opt(None, "Output folder. Default: runs/GROUP/NAME.", path="output")
    name: str | None = opt(None, "Name under runs/GROUP/. Default: derived from the command and the time.")
    overwrite: bool = opt(
        False, "Replace an output folder dlkit wrote for this command (only its own files).", saved=False
    )

    run_folder: ClassVar[bool] = True  # its output is a run folder: one written by an older dlkit may be replaced


@dataclass
class TrainConfig:
    """What every `train` command shares (DESIGN.md 1b). Groups subclass it and add their own fields."""

    data: str = opt("builtin:regression", "Dataset: builtin:NAME, a local path, or a Hub dataset id.", path="data")
    model: str = opt("builtin:mlp", "Model: builtin:NAME, a local save_pretrained folder, or a Hub id.", path="model")
    output_dir: str | None = opt(None, "Run folder. Default: runs/GROUP/NAME.", resume_safe=True, path="output")
    name: str | None = opt(
        None, "Run name under runs/GROUP/. Default: derived from the method and time.", resume_safe=True
    )
    seed: int = opt(0, "Seed for init, data order and dropout.")
    epochs: int = opt(3, "Passes over the training set.", resume_safe=True, min=1)
    max_steps: int | None = opt(
        None, "Stop after this many optimizer steps; overrides --epochs.", resume_safe=True, min=1, example="1"
    )
    batch_size: int = opt(16, "Examples per micro-batch per process.", min=1)
    grad_accum: int = opt(1, "Micro-batches per optimizer step (effective batch = batch * accum * processes).", min=1)
    lr: float = opt(3e-4, "Peak learning rate.", above=0)
    weight_decay: float = opt(0.0, "AdamW/SGD weight decay, applied to weights with >= 2 dims only.", min=0)
    optimizer: Literal["adamw", "sgd"] = opt("adamw", "Optimizer.")
    scheduler: Literal["constant", "linear", "cosine", "step"] = opt("linear", "Learning-rate schedule after warmup.")
    step_size: int = opt(
        0, "--scheduler step: multiply the lr by --gamma every N steps (0 = a third of the run).", min=0
    )
    gamma: float = opt(0.1, "--scheduler step: the factor applied every --step-size steps.", min=0)
    warmup: float = opt(0.0, "Warmup: a fraction of the total steps if < 1, else a number of steps.", min=0)
    max_grad_norm: float = opt(1.0, "Clip gradients to this norm; 0 turns clipping off.", min=0)
    precision: Literal["no", "bf16", "fp16"] = opt("no", "Mixed precision (fp16 needs CUDA).")
    eval_every: int = opt(0, "Evaluate every N optimizer steps; 0 = at the end of each epoch.", resume_safe=True, min=0)
    save_every: int = opt(
        0, "Checkpoint every N optimizer steps; 0 = at the end of each epoch.", resume_safe=True, min=0
    )
    keep_last: int = opt(2, "Checkpoints to keep (older ones are deleted).", resume_safe=True, min=1)
    log_every: int = opt(10, "Write a history line every N optimizer steps.", resume_safe=True, min=1)
    report_to: str = opt(
        "none",
        "Also send the history's scalars, the config and the final metrics to "
        "experiment trackers: none, or a comma-separated list of tensorboard (RUN/tensorboard), "
        "wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio.",
        resume_safe=True,
    )
    push_to_hub: str | None = opt(
        None,
        "Upload the final model folder, with its model card, to this Hub repository "
        "(NAMESPACE/NAME) at the end; refused before training when the Hub cannot be "
        "reached or no token is set.",
        resume_safe=True,
    )
    early_stop_patience: int = opt(
        0, "Stop after N evaluations without improvement; 0 = never.", resume_safe=True, min=0
    )
    monitor: str = opt("val_loss", "Eval metric that early stopping and 'best' follow.")
    monitor_mode: Literal["min", "max"] = opt("min", "Whether a lower or a higher --monitor is better.")
    divergence_factor: float = opt(
        10.0,
        "Stop when the smoothed training loss exceeds N x its best smoothed value "
        "(status diverged; the newest good checkpoint is named and kept); 0 = never.",
        resume_safe=True,
        min=0,
    )
    nan_policy: Literal["stop", "skip"] = opt(
        "stop",
        "On a non-finite loss: stop (status diverged; the newest good checkpoint is named and kept) or skip the step.",
        resume_safe=True,
    )
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward to save memory.")
    num_workers: int = opt(0, "DataLoader worker processes (0 = load in the main process).", resume_safe=True, min=0)
    resume: bool = opt(False, "Continue the run in --output-dir from its last checkpoint.", saved=False)
    overwrite: bool = opt(False, "Replace a run folder dlkit wrote (only its own files).", saved=False)
    command_line: list[str] | None = opt(
        None,
        "The command line that started this run, set by the CLI (recorded in config.json and used in the resume hint).",
        cli=False,
        saved=False,
    )

    command: ClassVar[tuple[str, str]] = ("core", "train")  # (group, verb): every group's config names its own
    run_folder: ClassVar[bool] = True

    def validate(self) -> None:
        """Reject combinations no run can use, naming the flags (ranges are checked on the fields)."""
        from dlkit.core.trackers import check_installed, tracker_names

        check_installed(tracker_names(self.report_to))
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pass one of them")


@dataclass
class ShardingConfig(TrainConfig):
    """TrainConfig plus the sharding flags, for the `train` commands whose models can outgrow one GPU."""

    sharding: Literal["none", "fsdp"] = opt(
        "none",
        "none: every process holds the whole model (DDP under torchrun); "
        "fsdp: parameters, gradients and optimizer state sharded over the "
        "processes, one transformer block at a time (torch FSDP2).",
    )
    cpu_offload: bool = opt(
        False,
        "--sharding fsdp: keep the shards, gradients and optimizer state in CPU memory "
        "(the optimizer steps on the CPU): slower, for shards that do not fit the GPUs.",
        resume_safe=True,
    )

    def validate(self) -> None:
        super().validate()
        if self.cpu_offload and self.sharding != "fsdp":
            raise ConfigError("--cpu-offload needs --sharding fsdp (it offloads the shards)")


# -- checking a config ------------------------------------------------------------------------------


def field_flag(f: dataclasses.Field) -> str:
    """How a field is named to the user: its first long flag, or its metavar when positional."""
    if f.metadata.get("argument"):
        return f.name.upper()
    flags = [x for x in f.metadata.get("flags", ()) if x.startswith("--")]
    return flags[0] if flags else "--" + flag_name(f.name)


def check_fields(cfg: Any) -> None:
    """The checks declared on the fields (ranges, choices), naming the flag; None values are not checked."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        meta = f.metadata
        for item in value if isinstance(value, (list, tuple)) else [value]:
            _check_value(field_flag(f), item, meta)


def _check_value(flag: str, value: Any, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{flag} {value}: choose one of {', '.join(map(str, choices))}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for key, ok, what in (
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("above", lambda v, b: v > b, ">"),
        ("below", lambda v, b: v < b, "<"),
    ):
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(
                f"{flag} must be {_range(meta)} (got {value!r})"
                if _two_sided(meta)
                else f"{flag} must be {what} {_num(bound)} (got {value!r})"
            )


def _two_sided(meta: Mapping[str, Any]) -> bool:
    return (meta.get("min") is not None or meta.get("above") is not None) and (
        meta.get("max") is not None or meta.get("below") is not None
    )


def _range(meta: Mapping[str, Any]) -> str:
    low = f"[{_num(meta['min'])}" if meta.get("min") is not None else f"({_num(meta['above'])}"
    high = f"{_num(meta['max'])}]" if meta.get("max") is not None else f"{_num(meta['below'])})"
    return f"in {low}, {high}"


def _num(value: float) -> str:
    return f"{value:g}"


def checked(cfg: C) -> C:
    """What every command does first, called from the CLI or from Python: the field checks, the config's own
    cross-field `validate()`, the run's settings as defaults (`from_run`), and the output folder checked against
    the output policy before any work. Idempotent, so a command may be handed a config checked already."""
    check_fields(cfg)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    take_run_defaults(cfg)
    check_inputs(cfg)
    check_outputs(cfg)
    return cfg


def check_inputs(cfg: Any) -> None:
    """The local paths the config names, checked for what they should be before any work: an input file (or
    image) that is missing or a folder, an input folder that is missing or a file; a local model folder's
    and a weights file's weights through dlkit.core.weights."""
    for f in dataclasses.fields(cfg):
        role, value = f.metadata.get("path"), getattr(cfg, f.name)
        if value is None or role not in ("file", "image", "folder", "model", "weights"):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            _check_input(field_flag(f), role, str(item))


def _check_input(flag: str, role: str, value: str) -> None:
    path = Path(value).expanduser()
    if role in ("file", "image"):
        if not path.exists():
            raise ConfigError(f"{flag} {value}: no such file")
        if path.is_dir():
            raise ConfigError(f"{flag} {value}: a folder, not a file")
    elif role == "folder" and not value.startswith("builtin:"):
        if not path.exists():
            raise ConfigError(f"{flag} {value}: no such folder")
        if not path.is_dir():
            raise ConfigError(f"{flag} {value}: a file, not a folder")
    elif path.is_dir() and role == "model":
        from dlkit.core.weights import check_folder

        check_folder(path, flag)
    elif path.is_file() and role == "weights":
        from dlkit.core.weights import check_file

        check_file(path, flag)


def run_settings(cfg: Any) -> dict[str, Any] | None:
    """The saved config.json of the command's --run (a run of its `run_of` group), or None without one."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("path") == "run" and f.metadata.get("run_of") and isinstance(value, str):
            from dlkit.core.run import Run

            return Run.open(value, group=f.metadata["run_of"]).read_config()
    return None


def take_run_defaults(cfg: Any) -> None:
    """Fields marked `from_run=KEY` take the run's saved KEY when left out; a `run_bound` one given with another
    value than the run's is refused in one line."""
    wanted = [f for f in dataclasses.fields(cfg) if f.metadata.get("from_run")]
    if not wanted:
        return
    saved = run_settings(cfg)
    if saved is None:
        return
    run = next(
        getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.metadata.get("path") == "run" and isinstance(getattr(cfg, f.name), str)
    )
    for f in wanted:
        key, value = f.metadata["from_run"], getattr(cfg, f.name)
        if key not in saved:
            continue
        if value is None:
            setattr(cfg, f.name, saved[key])
        elif f.metadata.get("run_bound") and not _same_setting(value, saved[key]):
            raise ConfigError(
                f"{field_flag(f)} {value} contradicts --run {run}, which was trained with "
                f"{field_flag(f)} {saved[key]}; leave {field_flag(f)} out to use the run's"
            )


def _same_setting(given: Any, saved: Any) -> bool:
    if given == saved:
        return True
    if isinstance(given, str) and isinstance(saved, str):
        a, b = Path(given).expanduser(), Path(saved).expanduser()
        return a.exists() and b.exists() and a.resolve() == b.resolve()
    return False


def command_of(cfg: Any) -> tuple[str, str] | None:
    """(group, verb) of the command a config belongs to, from its `command` class attribute."""
    return getattr(type(cfg), "command", None)


def local_inputs(cfg: Any) -> dict[str, Any]:
    """flag -> value of the fields that name inputs (data, runs, files...) and are local paths."""
    inputs: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        role, value = f.metadata.get("path"), getattr(cfg, f.name)
        if role in (None, "output", "output_file") or value is None:
            continue
        items = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        items = [v if Path(v).expanduser().exists() else v.rsplit(":", 1)[0] for v in items]  # RUN:WEIGHT
        local = [v for v in items if not v.startswith("builtin:") and Path(v).expanduser().exists()]
        if local:
            inputs[field_flag(f)] = local
    return inputs


def output_field(cfg: Any) -> dataclasses.Field | None:
    """The field naming the command's output folder (`path="output"`), if it has one."""
    return next((f for f in dataclasses.fields(cfg) if f.metadata.get("path") == "output"), None)


def claim_output(cfg: Any, folder: str | Path | None = None) -> Claim:
    """Make the command's output folder (its output field, or `folder` where the command computes a default)
    its own under the output policy: created and marked, or an earlier one of the same command emptied of
    dlkit's files with --overwrite. Keep the returned Claim while writing (it holds the folder's lock)."""
    from dlkit.core.outputs import claim

    f = output_field(cfg)
    group, verb = command_of(cfg) or ("dlkit", "output")
    value = folder if folder is not None else getattr(cfg, f.name) if f is not None else None
    if value is None:
        raise ConfigError("no output folder to write into")
    return claim(
        Path(value),
        group,
        verb,
        overwrite=bool(getattr(cfg, "overwrite", False)),
        flag=field_flag(f) if f is not None else "--output-dir",
        inputs=local_inputs(cfg),
        legacy_ok=getattr(type(cfg), "run_folder", False),
    )


def check_outputs(cfg: Any) -> None:
    """Every output folder/file the config names, checked against the output policy before any work (see
    dlkit.core.outputs); a --resume continues its folder, which Run.create checks instead. Under a launcher the
    main process alone checks (and writes): another rank would find the folder the main one has just made."""
    from dlkit.core.outputs import check_output, check_output_file, is_main_process

    command = command_of(cfg)
    if command is None or isinstance(cfg, TrainConfig) and cfg.resume or not is_main_process():
        return
    overwrite = bool(getattr(cfg, "overwrite", False))
    for f in dataclasses.fields(cfg):
        role, value = f.metadata.get("path"), getattr(cfg, f.name)
        if value is None or role not in ("output", "output_file"):
            continue
        if role == "output_file":
            check_output_file(Path(value), field_flag(f), overwrite, local_inputs(cfg))
        else:
            check_output(
                Path(value),
                *command,
                overwrite=overwrite,
                flag=field_flag(f),
                inputs=local_inputs(cfg),
                legacy_ok=getattr(type(cfg), "run_folder", False),
                resume_hint=isinstance(cfg, TrainConfig),
            )


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
    if origin is list:
        items = value if isinstance(value, list) else [value]  # one value for a list field: a list of one
        return [coerce(name, item, typing.get_args(tp)[0], where) for item in items]
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
    """Defaults, then the file (YAML/JSON), then explicit flags; checked on the fields and validated."""
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
    missing = [f for name, (f, _) in known.items() if _required(f) and values.get(name) is None]
    if missing:
        raise ConfigError(
            f"{field_flag(missing[0])} is required{_example(missing[0])}"
            + (f" (and {', '.join(field_flag(f) for f in missing[1:])})" if missing[1:] else "")
        )
    cfg = cls(**values)
    check_fields(cfg)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _example(f: dataclasses.Field) -> str:
    example = f.metadata.get("example")
    return f", e.g. {field_flag(f)} {example}" if example and "{" not in example else ""


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


def cache_features_opt() -> Any:
    """The one `--cache-features/--no-cache-features` flag of every group whose models can have a frozen first part
    (dlkit.core.features)."""
    return opt(
        True,
        "Run the frozen first part of the model (the frozen encoder or blocks) once over the training "
        "and validation data and train on its outputs, kept in memory or, when they do not fit, in a "
        "file mapped from disk. It applies when that part is frozen and its inputs are not augmented; "
        "--no-cache-features runs it on every batch (the same losses).",
    )


def shared(name: str, default: Any, of: Any = None) -> Any:
    """A field of TrainConfig (or of the config `of`) that another config re-declares with its own default; the
    --help text stays the one declared there, so it is written once."""
    return field(default=default, metadata=dict((of or TrainConfig).__dataclass_fields__[name].metadata))


@dataclass(kw_only=True)
class PlanOptions:
    """What every `plan` command (peak memory of a `train` with the same settings) shares beside its group's own
    model and method flags."""

    precision: Literal["no", "bf16", "fp16"] = shared("precision", "no")
    optimizer: Literal["adamw", "sgd"] = shared("optimizer", "adamw")
    gradient_checkpointing: bool = shared("gradient_checkpointing", False)
    processes: int = opt(1, "Data-parallel processes (one per GPU); each holds what the plan shows.", min=1)
    gpu_memory: float | None = opt(
        None, "GiB of GPU memory per process to fit into. Default: the detected GPU's.", above=0, example="16"
    )
