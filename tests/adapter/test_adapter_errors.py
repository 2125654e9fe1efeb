"""One line and exit code 2 for each bad input of `dlkit adapter`."""

from __future__ import annotations

import json

import pytest
from checks import one_line_error


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train(cli, tmp_path, *args):
    return cli("adapter", "train", "--output-dir", tmp_path / "run", "--max-steps", "1", *args)


def test_label_column_missing(cli, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "good", "y": 1}, {"text": "bad", "y": 0}])
    one_line_error(train(cli, tmp_path, "--data", data), "no column 'label'", "columns: text, y", "--label-col")
    assert not (tmp_path / "run").exists()


def test_label_column_with_one_class(cli, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("sentence,label\nnice film,pos\ngreat film,pos\n")
    one_line_error(
        train(cli, tmp_path, "--data", data, "--text-col", "sentence"),
        "--label-col label",
        "1 class",
        "'pos'",
        "at least 2",
    )


def test_text_column_empty(cli, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "", "label": 1}, {"text": "  ", "label": 0}])
    one_line_error(train(cli, tmp_path, "--data", data), "--text-col text", "is empty")


@pytest.mark.parametrize(
    "value,message",
    [
        ("0", "--bottleneck must be >= 1 (got 0)"),
        ("-3", "--bottleneck must be >= 1 (got -3)"),
        ("64", "hidden size - 1 (63)"),
        ("500", "(got 500)"),
    ],
)
def test_bottleneck_out_of_range(cli, tmp_path, value, message):
    one_line_error(train(cli, tmp_path, "--bottleneck", value), message)


def test_unknown_method(cli, tmp_path):
    one_line_error(train(cli, tmp_path, "--method", "lora"), "--method lora: choose one of adapter, head, full")


def test_unknown_placement_and_bad_layers(cli, tmp_path):
    one_line_error(train(cli, tmp_path, "--placement", "parallel"), "--placement")
    one_line_error(train(cli, tmp_path, "--layers", "5"), "--layers 5", "2 layers")


def test_run_folder_of_another_group(cli, tmp_path):
    (tmp_path / "vitrun").mkdir()
    (tmp_path / "vitrun" / "config.json").write_text(json.dumps({"_dlkit": {"group": "vit"}}))
    one_line_error(cli("adapter", "eval", "--run", tmp_path / "vitrun"), "vit run, not a adapter run")
    one_line_error(cli("adapter", "predict", "--run", tmp_path / "vitrun", "nice"), "not a adapter run")


def test_imdb_hub_id_offline_fails_fast(cli, tmp_path):
    one_line_error(train(cli, tmp_path, "--data", "imdb"), "--data imdb")


@pytest.mark.parametrize("bad", ["1.5", "nan", "NaN", "-1"])
def test_label_that_is_not_a_class_id(cli, tmp_path, bad):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"film {i},{i % 2}\n" for i in range(8)) + f"odd film,{bad}\n")
    one_line_error(train(cli, tmp_path, "--data", data), "--label-col label", "row 9", repr(bad), "expected a class id")
    assert not (tmp_path / "run").exists()


def test_nan_label_among_class_names(cli, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,pos\nbad,neg\nmeh,nan\n")
    one_line_error(train(cli, tmp_path, "--data", data), "row 3 has label 'nan'")


def test_validation_split_that_ends_up_empty(cli, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood film,1\nbad film,0\n")
    one_line_error(train(cli, tmp_path, "--data", data), "leaves no validation example", "2 examples in 2 classes")
    assert not (tmp_path / "run").exists()
    folder = tmp_path / "splits"
    folder.mkdir()
    (folder / "train.csv").write_text(data.read_text())
    (folder / "validation.csv").write_text("text,label\nfine film,\nodd film,\n")
    one_line_error(train(cli, tmp_path, "--data", folder), "validation.csv: no usable validation row")


def test_model_folder_with_a_pickle_torch_refuses(cli, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    from dlkit.builtin import BUILTINS

    model = tmp_path / "model"
    shutil.copytree(BUILTINS["tiny-bert"].load(), model)
    weights = load_file(model / "model.safetensors")
    (model / "model.safetensors").unlink()
    torch.save({**weights, "payload": Payload()}, model / "pytorch_model.bin")
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(20)])
    one_line_error(
        train(cli, tmp_path, "--model", model, "--data", data),
        "pytorch_model.bin is a pickle",
        "weights_only=True",
        "Unsupported global",
    )
    assert not (tmp_path / "run").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))
