"""The one weights loader (dlkit.core.weights): safetensors preferred, pickles only with weights_only=True and
nothing in them run, a truncated or corrupt file one line naming it and how to recover."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from dlkit.core.errors import WeightsError
from dlkit.core.sources import resolve
from dlkit.core.weights import check_file, check_folder, load_cached, load_into, load_state_dict, loading


class Payload:
    """Unpickling this writes a file: any load that runs it fails the test."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def files(tmp_path):
    state = {"weight": torch.randn(4, 3), "bias": torch.zeros(4)}
    save_file(state, str(tmp_path / "good.safetensors"))
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) - 9])
    torch.save(state, tmp_path / "good.bin")
    torch.save(state, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    zipped = (tmp_path / "good.bin").read_bytes()
    (tmp_path / "truncated.bin").write_bytes(zipped[: len(zipped) // 2])
    pwned = tmp_path / "PWNED"
    torch.save({"weight": Payload(pwned)}, tmp_path / "evil.bin")
    torch.save({"weight": Payload(pwned)}, tmp_path / "evil-legacy.bin", _use_new_zipfile_serialization=False)
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"weight": Payload(pwned)}, fh)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    return tmp_path, state


def test_good_files_load_in_every_container(files):
    folder, state = files
    for name in ("good.safetensors", "good.bin", "legacy.bin"):
        loaded = load_state_dict(folder / name)
        assert set(loaded) == set(state) and torch.equal(loaded["weight"], state["weight"])
    model = load_into(torch.nn.Linear(3, 4), folder / "good.safetensors")
    assert torch.equal(model.weight, state["weight"])


@pytest.mark.parametrize("name", ["evil.bin", "evil-legacy.bin", "evil.pkl"])
def test_pickles_that_need_code_are_refused_in_one_line_and_never_run(files, name):
    folder, _ = files
    with pytest.raises(WeightsError, match=r"is a pickle that torch.load\(weights_only=True\) refuses") as err:
        load_state_dict(folder / name, "--pretrained")
    assert "\n" not in str(err.value) and str(err.value).startswith(f"--pretrained {folder / name}")
    assert not (folder / "PWNED").exists()


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("truncated.safetensors", "safetensors file is truncated or corrupt"),
        ("truncated.bin", "pickle is truncated or corrupt"),
        ("empty.safetensors", "not a weights file"),
    ],
)
def test_truncated_files_are_one_line_naming_the_file(files, name, what):
    folder, _ = files
    with pytest.raises(WeightsError, match=what) as err:
        load_into(torch.nn.Linear(3, 4), folder / name)
    assert str(folder / name) in str(err.value) and "\n" not in str(err.value)
    assert "replace it with a good copy" in str(err.value)


def test_a_model_that_does_not_fit_the_file_is_one_line(files):
    folder, _ = files
    with pytest.raises(WeightsError, match="cannot be loaded .*size mismatch for weight"):
        load_into(torch.nn.Linear(5, 4), folder / "good.safetensors")
    with pytest.raises(WeightsError, match="does not fit the model .missing 0.bias"):
        load_into(torch.nn.Sequential(torch.nn.Linear(3, 4)), folder / "good.safetensors")


def test_a_run_file_names_the_checkpoint_to_recover_from(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "final").mkdir(parents=True)
    (run / "checkpoints" / "step_0000004").mkdir()
    (run / "config.json").write_text(json.dumps({"_dlkit": {"group": "charrnn"}}))
    (run / "checkpoints" / "final" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(
        WeightsError,
        match=r"newest checkpoint is .*step_0000004: `dlkit charrnn train --config "
        r".*config.json --output-dir .*run --resume` writes the final model again",
    ):
        check_file(run / "checkpoints" / "final" / "model.safetensors")
    (run / "checkpoints" / "step_0000004").rmdir()
    with pytest.raises(WeightsError, match="no other checkpoint to recover from: train it again"):
        check_file(run / "checkpoints" / "final" / "model.safetensors")


def test_model_folders_are_checked_when_resolved(files):
    folder, _ = files
    model = folder / "model"
    model.mkdir()
    torch.save({"w": torch.ones(2)}, model / "pytorch_model.bin")
    resolve(str(model), "model")  # plain tensors in a pickle: accepted
    (folder / "evil.bin").rename(model / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"pytorch_model.bin is a pickle .*Unsupported global"):
        resolve(str(model), "model")
    (folder / "good.safetensors").rename(model / "model.safetensors")  # safetensors preferred: the .bin is not read
    check_folder(model)
    (folder / "truncated.safetensors").rename(model / "model.safetensors")
    with pytest.raises(WeightsError, match="--model .*model.safetensors: the safetensors file is truncated"):
        resolve(str(model), "model")
    assert not (folder / "PWNED").exists()


def test_library_errors_while_loading_become_one_line(tmp_path):
    with pytest.raises(WeightsError, match=r"--model .*: the weights cannot be loaded \(boom\)"):
        with loading(tmp_path, "--model"):
            raise OSError("boom")


def test_a_corrupt_cache_file_is_computed_again(tmp_path, capsys):
    (tmp_path / "features.safetensors").write_bytes(b"junk")
    assert load_cached(tmp_path / "features.safetensors") is None
    assert "computing it again" in capsys.readouterr().err
