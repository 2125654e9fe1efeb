"""`--help` at 80 columns: every word of every option's help text shows whole (rich cuts a word that is wider
than its column with an ellipsis, or folds it). `--x/--no-x` pairs and choice lists used to take the width."""

from __future__ import annotations

import pytest
import typer
from rich.text import Text


def commands() -> list[tuple[list[str], object]]:
    from dlkit.cli import app, load_groups

    load_groups(None)
    found = []

    def walk(command, path):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), [])
    return found


def cut_words(output: str, command) -> list[str]:
    """Words of the command's option help texts that do not show whole in `output`."""
    shown = {token for line in output.splitlines() for token in line.replace("│", " ").split()}
    cut = []
    for param in command.params:
        for word in Text.from_markup(getattr(param, "help", None) or "").plain.split():
            if word not in shown:
                cut.append(word)
    return cut


def render(cli, monkeypatch, path: list[str]) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    return result.stdout


def test_llm_train_help_cuts_no_word_at_80_columns(cli, monkeypatch):
    path, command = next((p, c) for p, c in commands() if p == ["llm", "train"])
    output = render(cli, monkeypatch, path)
    assert "…" not in output
    assert cut_words(output, command) == []
    assert "--gradient-checkpointing" in output and "--no-gradient-checkpointing" in output
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if "--drop-long" in line)
    assert "--no-drop-long" in lines[at + 1]  # the negative form under the positive one, in the same column


def test_every_command_help_cuts_no_word_at_80_columns(cli, monkeypatch):
    cut = {}
    for path, command in commands():
        output = render(cli, monkeypatch, path)
        words = cut_words(output, command) + (["…"] if "…" in output else [])
        if words:
            cut[" ".join(path)] = words
    assert cut == {}


@pytest.mark.parametrize("flag", ["--drop-long", "--no-drop-long"])
def test_both_forms_of_a_switch_still_parse_after_a_help(flag, capsys):
    from dlkit.core.commands import config_command, group_app
    from dlkit.llm.config import LlmConfig

    seen = []
    app = group_app("probe", "probe")

    @config_command(app, LlmConfig)
    def train(cfg: LlmConfig) -> None:
        seen.append(cfg)

    command = typer.main.get_command(app)  # one click command for both calls: the help must leave it as it was
    command.main(["train", "--help"], standalone_mode=False)
    assert "--no-drop-long" in capsys.readouterr().out
    command.main(["train", flag], standalone_mode=False)
    assert seen[-1].drop_long is (flag == "--drop-long")
