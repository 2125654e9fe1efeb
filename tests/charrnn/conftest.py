"""charrnn tests share one cache folder (the encoded memmaps and builtin:markov's text) per session."""

import pytest


@pytest.fixture(scope="session")
def charrnn_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dlkit_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(charrnn_cache, monkeypatch):
    monkeypatch.setenv("DLKIT_CACHE", str(charrnn_cache))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster than several fighting over a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
