"""Building blocks for group CLIs: a sub-app that checks its extra, and commands generated from a
config dataclass, so every `train` shares the same flag names, help texts and precedence rules
(defaults < --config FILE < flags). Imports no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand

from dlkit.core.config import ShardingConfig, TrainConfig, checked, config_fields, flag_name, load_config
from dlkit.core.errors import MissingExtraError

F = TypeVar("F", bound=Callable[..., Any])


CHOICES_WIDTH = 10  # characters per line of a choice list in the --help type column


class DlkitCommand(TyperCommand):
    """A command whose --help keeps the help column readable at 80 columns.

    Typer lays the options out as a rich table (names, negative names, type, help) and rich narrows the widest
    columns first, so a `--x/--no-x` pair and a long choice list took the width and the help column was cut
    mid-word. Here each pair is shown in one column, `--no-x` under `--x`, and a choice list wraps after `|`;
    the help column gets the rest of the line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _compact_options(self.get_params(ctx)):
            super().format_help(ctx, formatter)


class DlkitTyper(typer.Typer):
    """A Typer app whose commands are `DlkitCommand`s unless told otherwise."""

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[F], F]:
        return super().command(name, cls=cls or DlkitCommand, **kwargs)


@contextlib.contextmanager
def _compact_options(params: list[Any]) -> Iterator[None]:
    """For the time of one --help: each `--x/--no-x` as one name of two lines, and each choice list as a
    metavar wrapped after its `|`. Parsing never sees this: the names and metavars are put back after."""
    saved = []
    for param in params:
        secondary = getattr(param, "secondary_opts", None)
        choices = getattr(param.type, "choices", None)
        if not secondary and not choices or getattr(param, "metavar", None):
            continue
        saved.append((param, param.opts, secondary, param.metavar))
        if secondary:
            param.opts, param.secondary_opts = ["\n".join([*param.opts, *secondary])], []
        if choices:
            param.metavar = _wrapped_choices([str(c) for c in choices])
    try:
        yield
    finally:
        for param, opts, secondary, metavar in saved:
            param.opts, param.metavar = opts, metavar
            if secondary is not None:
                param.secondary_opts = secondary


def _wrapped_choices(choices: list[str]) -> str:
    """<a|b|c> on lines of at most CHOICES_WIDTH characters (longer choices get a line of their own)."""
    text = "<" + "|".join(choices) + ">"
    parts = [p + "|" for p in text.split("|")[:-1]] + [text.rsplit("|", 1)[-1]]
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > CHOICES_WIDTH:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def group_app(name: str, help: str, extra: str | None = None, requires: tuple[str, ...] = ()) -> typer.Typer:
    """A group's Typer sub-app; calling any of its commands first checks that its extra is installed."""
    app = DlkitTyper(name=name, help=help, no_args_is_help=True, rich_markup_mode="rich")

    @app.callback()
    def _check_extra() -> None:
        missing = [m for m in requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingExtraError(
                f"dlkit {name} needs the '{extra}' extra (missing: {', '.join(missing)}); "
                f"install it with: pip install 'dlkit[{extra}]'"
            )

    _check_extra.__doc__ = help
    return app


def config_command(
    app: typer.Typer, config_cls: type, name: str | None = None, skip: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """Register `fn(cfg)` as a command whose flags (and positional arguments) are the fields of `config_cls`.

    Only flags given on the command line override the --config file; the rest keep the file's or the
    dataclass's value. A required field is required of the command line or the file together, so a --config
    file may give it. The config is checked (`dlkit.core.config.checked`: ranges, choices, the run's defaults,
    the output policy) before `fn` runs. The verb is `config_cls.command[1]` unless `name` is given; `skip`
    drops fields that make no sense for this command. The callback keeps `config_class`, so anything walking
    the Typer tree finds each command's config.
    """

    def decorator(fn: F) -> F:
        params = []
        for field_name, (f, tp) in config_fields(config_cls).items():
            if not f.metadata.get("cli", True) or field_name in skip:
                continue
            params.append(_parameter(field_name, f, tp))
        config_help = "YAML/JSON file of this command's settings (the flags' names as keys); flags given here win."
        if issubclass(config_cls, TrainConfig):
            config_help += " A run's config.json reproduces it."
        params.append(
            inspect.Parameter(
                "config",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=typing.Optional[Path],  # noqa: UP045
                default=typer.Option(None, "--config", help=config_help, rich_help_panel="Config"),
            )
        )

        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

        def command(ctx: typer.Context, **kwargs: Any) -> Any:
            config_file = kwargs.pop("config")
            overrides = {k: v for k, v in kwargs.items() if _from_command_line(ctx, k)}
            cfg: Any = load_config(config_cls, config_file, overrides)
            root = ctx.find_root().obj
            if isinstance(root, dict) and "argv" in root and hasattr(cfg, "command_line"):
                cfg.command_line = list(root["argv"])  # the command line, for config.json and the resume hint
            return fn(checked(cfg))

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        command.config_class = config_cls  # type: ignore[attr-defined]
        verb = name or getattr(config_cls, "command", (None, fn.__name__.replace("_", "-")))[1]
        app.command(verb)(command)
        return fn

    return decorator


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _parameter(field_name: str, f: dataclasses.Field, tp: Any) -> inspect.Parameter:
    meta = f.metadata
    help_text = meta.get("help", "")
    base, optional = _unwrap_optional(tp)
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    if required:
        example = meta.get("example")
        help_text += " (required)" if not example or "{" in example else f" (required; e.g. {example})"
    annotation: Any = base
    if optional or required or typing.get_origin(base) is list:
        annotation = typing.Optional[annotation]  # noqa: UP045  (typer needs the typing form)
    if required:
        default = None  # required of the command line and --config together: checked by load_config
    elif f.default is not dataclasses.MISSING:
        default = f.default
    else:
        default = f.default_factory()  # type: ignore[operator]  # not MISSING: the branches above
    if typing.get_origin(base) is list and not default:
        default = None
    if meta.get("argument"):
        info: Any = typer.Argument(default, help=help_text, metavar=field_name.upper(), show_default=False)
        return inspect.Parameter(field_name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
    flag = "--" + flag_name(field_name)
    decls = list(meta.get("flags") or [flag])
    if base is bool:
        decls = [f"{decls[0]}/--no-{decls[0].removeprefix('--')}", *decls[1:]]
    panel = "Training" if field_name in _SHARED else "Options"
    option = typer.Option(default, *decls, rich_help_panel=panel, help=help_text)
    return inspect.Parameter(field_name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _shared_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(ShardingConfig)} - {"data", "model"}  # TrainConfig's and sharding's


_SHARED = _shared_fields()
