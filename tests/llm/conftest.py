"""Shared fixtures of the llm tests: small instruction files."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_helpers import capitals_rows, translate_rows, write_jsonl


@pytest.fixture(scope="session")
def capitals_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "capitals.jsonl", capitals_rows())


@pytest.fixture(scope="session")
def translate_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "translate.jsonl", translate_rows())
