"""One line and exit code 2 for each bad input of `dlkit adapter`."""

from __future__ import annotations

import json

import pytest


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


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
    one_line_error(train(cli, tmp_path, "--data", data, "--text-col", "sentence"), "--label-col label",
                   "1 class", "'pos'", "at least 2")


def test_text_column_empty(cli, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "", "label": 1}, {"text": "  ", "label": 0}])
    one_line_error(train(cli, tmp_path, "--data", data), "--text-col text", "is empty")


@pytest.mark.parametrize("value,message", [("0", "--bottleneck must be > 0 (got 0)"),
                                           ("-3", "--bottleneck must be > 0 (got -3)"),
                                           ("64", "hidden size - 1 (63)"), ("500", "(got 500)")])
def test_bottleneck_out_of_range(cli, tmp_path, value, message):
    one_line_error(train(cli, tmp_path, "--bottleneck", value), message)


def test_unknown_method(cli, tmp_path):
    one_line_error(train(cli, tmp_path, "--method", "lora"), "--method", "'lora' is not one of", "adapter")


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
