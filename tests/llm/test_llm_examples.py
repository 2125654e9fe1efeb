"""The real-model recipes in examples/llm stay valid configs (keys, types, methods) as the code changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlkit.core.config import load_config
from dlkit.llm.config import LlmConfig
from dlkit.llm.data import detect_format, to_messages
from dlkit.llm.methods import METHODS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "llm"


@pytest.mark.parametrize("folder", ["gemma2-2b", "llama3.2-3b"])
def test_every_recipe_is_a_valid_config_of_its_method(folder):
    """A recipe is optional per method (`llm sweep --config-dir` falls back to --train-config without one), so a
    new method is its registry entry and its test; the recipes that exist name real methods and load."""
    files = sorted((EXAMPLES / folder).glob("*.yaml"))
    assert files and {f.stem for f in files} <= set(METHODS)
    for file in files:
        cfg = load_config(LlmConfig, file)
        assert cfg.method == file.stem and cfg.data == "universitytehran/SlimOrca"
        assert cfg.model in ("google/gemma-2-2b", "meta-llama/Llama-3.2-3B")


def test_makefile_has_the_sweep_targets():
    text = (EXAMPLES / "Makefile").read_text()
    assert "sweep-gemma2:" in text and "sweep-llama:" in text and "--config-dir" in text


def test_persian_slimorca_rows_are_read_as_openai_messages():
    row = {
        "message": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
    }
    assert detect_format([row]) == "openai"
    assert [m["role"] for m in to_messages(row, "openai")] == ["system", "user", "assistant"]
