"""clip tests share one dlkit cache per session (generated shape sets, model configs, cached features),
and build small ImageFolders with a known layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clip_helpers import make_image_folder


@pytest.fixture(scope="session", autouse=True)
def clip_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("dlkit_cache")
    before = os.environ.get("DLKIT_CACHE")
    os.environ["DLKIT_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("DLKIT_CACHE", None)
    else:
        os.environ["DLKIT_CACHE"] = before


@pytest.fixture
def colour_folder(tmp_path: Path) -> Path:
    """Three classes in WordNet-style folder names, four images each."""
    return make_image_folder(
        tmp_path / "colours", {"n00000001-Red_Thing": 4, "n00000002-green_thing": 4, "n00000003-Blue-Thing": 4}
    )
