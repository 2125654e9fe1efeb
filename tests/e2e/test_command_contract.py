"""Every command of the Typer tree, held to the command contract (DESIGN.md 2c).

The commands are found by walking the app (every group through the entry points, every verb from its sub-app),
never from a list, so a command added later is covered without editing this file. Each must be a config
dataclass (the callback keeps `config_class`) with `--config`, and each hostile input it can be given ends in
exit code 0 (a user's files untouched) or exit code 2 with one line naming the problem, never a traceback:

- its output folder (or file) pointed at a user's folder holding notes.txt, stats.json and plots/samples.png,
  with and without --overwrite (which every command with an output folder has);
- a run whose final weights are truncated, and one whose weights are a pickle that would run code;
- a missing path, an empty data file, a folder where a file is expected, a file where a folder is;
- a --config file that is missing or a folder.

What each field holds is read from its declaration (`opt(..., path=...)`); a run folder comes from a small
shared set of tiny runs, one per group, trained once per session (`dlkit GROUP train --max-steps 1`).
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlkit.cli import app, load_groups, main
from dlkit.core.config import field_flag


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    config: type

    @property
    def id(self) -> str:
        return " ".join(self.words)

    @property
    def group(self) -> str:
        return getattr(self.config, "command", ("dlkit", ""))[0]


def walk(typer_app, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    found = []
    for info in typer_app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        found.append(((*prefix, name), info.callback))
    for group in typer_app.registered_groups:
        found.extend(walk(group.typer_instance, (*prefix, group.name)))
    return found


def all_commands() -> list[Command]:
    load_groups(None)  # every installed group, in full
    commands = []
    for words, callback in walk(app):
        config = getattr(callback, "config_class", None)
        assert config is not None, f"`dlkit {' '.join(words)}` is not declared through config_command"
        commands.append(Command(words, config))
    return commands


COMMANDS = all_commands()
SENTINELS = {"notes.txt": "the user's notes", "stats.json": '{"mine": true}', "plots/samples.png": "my plot"}


def fields(command: Command) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(command.config) if f.metadata.get("cli", True)]


def role(f: dataclasses.Field) -> str | None:
    return f.metadata.get("path")


def required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def is_list(f: dataclasses.Field, config: type) -> bool:
    hint = typing.get_type_hints(config)[f.name]
    return list in (typing.get_origin(hint), *map(typing.get_origin, typing.get_args(hint)))


# -- cases ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    command: Command
    kind: str
    field: str | None = None  # the field the hostile value goes to

    @property
    def id(self) -> str:
        return f"{self.command.id}:{self.kind}" + (f":{self.field}" if self.field else "")


INPUT_CASES = {
    "run": ["missing", "file-not-folder", "truncated-weights", "pickled-weights"],
    "data": ["missing", "empty-file", "empty-folder"],
    "model": ["missing", "truncated-weights", "pickled-weights"],
    "weights": ["truncated-file", "pickled-file"],
    "file": ["missing", "empty-file", "folder-not-file"],
    "text_or_file": ["empty-file", "folder-not-file"],
    "image": ["missing", "empty-file", "folder-not-file"],
    "folder": ["missing", "file-not-folder"],
}


def cases_of(command: Command) -> list[Case]:
    cases = [Case(command, "config-missing"), Case(command, "config-folder")]
    for f in fields(command):
        if role(f) == "output":
            assert any(g.name == "overwrite" for g in fields(command)), (
                f"`dlkit {command.id}` writes an output folder ({field_flag(f)}) but has no --overwrite"
            )
            cases += [Case(command, "user-folder", f.name), Case(command, "user-folder-overwrite", f.name)]
        elif role(f) == "output_file":
            cases += [Case(command, "user-file", f.name), Case(command, "user-file-overwrite", f.name)]
        else:
            cases += [Case(command, kind, f.name) for kind in INPUT_CASES.get(role(f), [])]
    return cases


CASES = [case for command in COMMANDS for case in cases_of(command)]


def test_the_tree_holds_every_group_and_the_contract_is_declared():
    """The walk found every installed group's commands; each has --config and its function's name is the verb."""
    from importlib.metadata import entry_points

    groups = {c.words[0] for c in COMMANDS}
    assert {ep.name for ep in entry_points(group="dlkit.groups")} <= groups
    for command in COMMANDS:
        verb = getattr(command.config, "command", None)
        assert verb is not None and verb[1] == command.words[-1], f"{command.id}: config names {verb}"
    print(f"{len(COMMANDS)} commands, {len(CASES)} cases")


# -- the shared tiny runs ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, worker_id):
    """One folder for every xdist worker, so each tiny run is trained once per session."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if worker_id != "master" else base) / "contract-runs"


def tiny_run(root: Path, group: str) -> Path:
    """`dlkit GROUP train --max-steps 1` into root/GROUP, once (other workers wait on a lock file)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    run = root / group
    with open(root / f".{group}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "metrics.json").is_file():
            if run.exists():
                shutil.rmtree(run)
            code = main(["-q", group, "train", "--max-steps", "1", "--output-dir", str(run)])
            assert code == 0, f"the tiny {group} run did not train"
    return run


def run_of(f: dataclasses.Field, command: Command, root: Path) -> Path:
    """A tiny run of the group the field wants (any group's will do for a command that reads every run)."""
    return tiny_run(root, f.metadata.get("run_of") or "charrnn")


# -- hostile values ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this writes a file: a load that runs it fails the test."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def weights_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth")]


def spoil(folder: Path, how: str, pwned: Path) -> None:
    """Truncate every weights file under `folder`, or replace each by a pickle that runs code."""
    files = weights_files(folder)
    assert files, f"no weights under {folder}"
    for path in files:
        if how == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            with open(path, "wb") as fh:
                pickle.dump({"weight": Payload(pwned)}, fh)


def spoiled_run(source: Path, how: str, tmp: Path, pwned: Path) -> Path:
    run = tmp / f"run-{how}"
    shutil.copytree(source, run)
    spoil(run / "checkpoints" / "final", how, pwned)
    return run


def model_folder(how: str, tmp: Path, pwned: Path) -> Path:
    """A builtin model's folder (a real save_pretrained layout) with its weights spoiled."""
    from dlkit.builtin import BUILTINS

    folder = tmp / f"model-{how}"
    shutil.copytree(BUILTINS["tiny-llama"].load(), folder)
    spoil(folder, how, pwned)
    return folder


def image_file(tmp: Path) -> Path:
    from PIL import Image

    path = tmp / "picture.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return path


def hostile(kind: str, f: dataclasses.Field, command: Command, tmp: Path, root: Path, pwned: Path) -> str:
    if kind == "missing":
        return str(tmp / "no-such-thing" / "x.jsonl")
    if kind in ("empty-file",):
        path = tmp / ("empty.png" if role(f) == "image" else "empty.jsonl")
        path.write_bytes(b"")
        return str(path)
    if kind in ("empty-folder", "folder-not-file"):
        path = tmp / "a-folder"
        path.mkdir(exist_ok=True)
        return str(path)
    if kind == "file-not-folder":
        path = tmp / "a-file.txt"
        path.write_text("not a folder")
        return str(path)
    if kind.endswith("-weights") and role(f) == "run":
        return str(spoiled_run(run_of(f, command, root), kind.split("-")[0], tmp, pwned))
    if kind.endswith("-weights"):
        return str(model_folder(kind.split("-")[0], tmp, pwned))
    if kind in ("truncated-file", "pickled-file"):
        import torch
        from safetensors.torch import save_file

        folder = tmp / "weights"
        folder.mkdir()
        save_file({"w": torch.ones(64)}, str(folder / "weights.safetensors"))
        spoil(folder, kind.split("-")[0], pwned)
        return str(folder / "weights.safetensors")
    raise AssertionError(kind)


def value_for(f: dataclasses.Field, command: Command, tmp: Path, root: Path) -> str:
    """A value that works offline for a field the command needs: its declared example, a tiny run, a file."""
    example = f.metadata.get("example")
    if role(f) == "run":
        run = run_of(f, command, root)
        return example.replace("{run}", str(run)) if example else str(run)
    if role(f) == "image":
        return str(image_file(tmp))
    if role(f) == "output":
        return str(tmp / "out")
    if role(f) == "file" and example:
        path = tmp / f"{f.name}.txt"
        path.write_text(example + "\n", encoding="utf-8")
        return str(path)
    assert example is not None, f"{command.id}: {field_flag(f)} is required but declares no example"
    return example


def argv(command: Command, values: dict[str, str], flags: list[str]) -> list[str]:
    args = ["-q", *command.words]
    for f in fields(command):
        if f.name not in values:
            continue
        if f.metadata.get("argument"):
            args.append(values[f.name])
        else:
            args += [field_flag(f), values[f.name]]
    return args + flags


def user_folder(path: Path) -> dict[str, str]:
    for name, text in SENTINELS.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return {name: (path / name).read_text() for name in SENTINELS}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path, runs_root, monkeypatch, capsys):
    command = case.command
    monkeypatch.chdir(tmp_path)  # defaults such as runs/GROUP/... land here
    pwned = tmp_path / "PWNED"
    values: dict[str, str] = {}
    for f in fields(command):  # what the command needs to start on builtin data
        if f.name == case.field:
            continue
        if required(f) or role(f) == "run" or f.metadata.get("example"):
            values[f.name] = value_for(f, command, tmp_path, runs_root)
    flags: list[str] = []
    sentinel_root, expected = None, None
    if case.kind.startswith("config-"):
        flags = ["--config", str(tmp_path / "nope.yaml") if case.kind == "config-missing" else str(tmp_path)]
    elif case.kind.startswith("user-folder"):
        sentinel_root = tmp_path / "users-folder"
        expected = user_folder(sentinel_root)
        values[case.field] = str(sentinel_root)
    elif case.kind.startswith("user-file"):
        sentinel_root = tmp_path / "users-folder"
        expected = user_folder(sentinel_root)
        values[case.field] = str(sentinel_root / "notes.txt")
    else:
        f = next(g for g in fields(command) if g.name == case.field)
        value = hostile(case.kind, f, command, tmp_path, runs_root, pwned)
        example = f.metadata.get("example") or ""
        values[case.field] = example.replace("{run}", value) if "{run}" in example and role(f) == "run" else value
    if case.kind.endswith("-overwrite"):
        flags.append("--overwrite")

    capsys.readouterr()
    code = main(argv(command, values, flags))
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out, err[-3000:]
    assert code in (0, 2), (code, err[-3000:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    if sentinel_root is not None:
        assert {name: (sentinel_root / name).read_text() for name in SENTINELS} == expected
        assert sorted(
            p.relative_to(sentinel_root).as_posix() for p in sentinel_root.rglob("*") if p.is_file()
        ) == sorted(SENTINELS), "files were added to the user's folder"
        assert code == 2, "a user's folder was written into"
    assert not pwned.exists(), "a pickle in a weights file ran code"
