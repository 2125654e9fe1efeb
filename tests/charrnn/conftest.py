"""charrnn tests share one cache folder (the encoded memmaps and builtin:markov's text) per session."""

import pytest


@pytest.fixture(scope="session")
def charrnn_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dlkit_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(charrnn_cache, monkeypatch):
    monkeypatch.setenv("DLKIT_CACHE", str(charrnn_cache))
