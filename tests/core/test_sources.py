import pytest

from dlkit.core import sources
from dlkit.core.errors import SourceError
from dlkit.core.sources import resolve


def test_builtin_and_local(tmp_path):
    assert resolve("builtin:regression", "data").kind == "builtin"
    folder = tmp_path / "model"
    folder.mkdir()
    source = resolve(str(folder), "model")
    assert source.kind == "local" and source.path == folder.resolve()


def test_unknown_builtin_lists_the_valid_ones_of_that_kind():
    with pytest.raises(SourceError, match=r"unknown builtin model 'nope'; available: .*mlp"):
        resolve("builtin:nope", "model")
    with pytest.raises(SourceError, match="unknown builtin data 'mlp'"):
        resolve("builtin:mlp", "data")


def test_help_texts_list_the_builtins_from_the_registry():
    import dataclasses

    from dlkit.builtin import listed
    from dlkit.charrnn.config import CharRNNConfig
    from dlkit.llm.config import LlmConfig
    from dlkit.vit.config import VitConfig

    assert listed("llm", "model") == "builtin:tiny-llama, builtin:tiny-gemma2"
    helps = {
        (cls, f.name): f.metadata["help"]
        for cls in (LlmConfig, VitConfig, CharRNNConfig)
        for f in dataclasses.fields(cls)
    }
    assert "builtin:tiny-llama, builtin:tiny-gemma2," in helps[LlmConfig, "model"]
    assert "builtin:tiny-vit, builtin:tiny-deit," in helps[VitConfig, "model"]
    assert "builtin:markov, builtin:text," in helps[CharRNNConfig, "data"]


@pytest.mark.parametrize("spec", ["./missing.jsonl", "/no/such/folder", "data/train.csv", "a/b/c"])
def test_missing_paths_are_not_mistaken_for_hub_ids(spec):
    with pytest.raises(SourceError, match="no such file or folder"):
        resolve(spec, "data")


def test_offline_hub_id_fails_fast_in_one_sentence(monkeypatch):
    from huggingface_hub import HfApi

    asked = []
    real = HfApi.repo_info

    def repo_info(self, repo_id, **kwargs):  # the real call, recording the timeout it was given
        asked.append(kwargs.get("timeout"))
        return real(self, repo_id, **kwargs)

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    with pytest.raises(SourceError) as err:
        resolve("google/gemma-2-2b", "model", flag="--model")
    message = str(err.value)
    assert asked == [sources.HUB_TIMEOUT_S] and sources.HUB_TIMEOUT_S <= 5  # one short-timeout request, no retries
    assert message.startswith("--model google/gemma-2-2b: the Hugging Face Hub cannot be reached")
    assert "builtin:NAME" in message and "\n" not in message


def test_hub_disabled_by_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE"):
        resolve("jxie/flickr8k", "data")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../../b.jpg", "../Images/../../x.jpg"])
def test_paths_named_in_data_files_stay_inside_the_dataset(tmp_path, name):
    from dlkit.core.errors import DataError
    from dlkit.core.sources import path_inside

    with pytest.raises(DataError, match="points outside the dataset folder"):
        path_inside(tmp_path, name, "captions.txt:2", tmp_path / "Images")
    assert path_inside(tmp_path, "a/../b.jpg", "x", tmp_path / "Images") == tmp_path / "Images" / "b.jpg"


def test_scheme_hooks_extend_resolve_for_one_caller():
    seen = []

    def tagged(value, kind, flag):
        seen.append((value, kind, flag))
        return "local", "/models/" + value

    source = resolve("my:thing", "model", flag="--model", schemes={"my:": tagged})
    assert source == sources.Source("local", "/models/thing", "my:thing") and seen == [("thing", "model", "--model")]
    with pytest.raises(SourceError, match=r"^--model org/clip: the Hugging Face Hub cannot be reached"):
        resolve("hf-hub:org/clip", "model", flag="--model", schemes={"hf-hub:": sources.hub_scheme})
    with pytest.raises(SourceError, match="no such file or folder"):  # without the hook it is not a known form
        resolve("my:thing/a/b", "model")
