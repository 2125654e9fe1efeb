import json

import pytest
from checks import one_line_error

TINY = [
    "--arch",
    "gru",
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--block-size",
    "16",
    "--batch-size",
    "8",
    "--max-steps",
    "6",
    "--eval-every",
    "3",
    "--sample-chars",
    "20",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run on builtin:text, shared by the sample/eval tests."""
    from dlkit.cli import main

    out = tmp_path_factory.mktemp("charrnn") / "run"
    assert main(["charrnn", "train", "--data", "builtin:text", "--output-dir", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["arch"] == "gru" and metrics["steps"] == 6
    assert metrics["val_bpc"] > 0 and metrics["val_perplexity"] > 1 and metrics["tokens_per_second"] > 0
    assert sorted(p.name for p in (trained / "samples").iterdir()) == ["step_0000003.txt", "step_0000006.txt"]
    assert (trained / "samples" / "step_0000006.txt").read_text().startswith("R")  # the text's first character
    assert {"loss.png", "val_bpc.png"} <= {p.name for p in (trained / "plots").iterdir()}
    vocab = json.loads((trained / "vocab.json").read_text())["chars"]
    assert "R" in vocab and json.loads((trained / "checkpoints" / "final" / "vocab.json").read_text())["chars"] == vocab
    evals = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [3, 6]
    train_logs = [r for r in evals if r["kind"] == "train"]
    assert train_logs and all(r["bpc"] == pytest.approx(r["loss"] / 0.6931471805599453) for r in train_logs)


def test_sample_streams_prompt_and_characters(cli, trained):
    result = cli(
        "charrnn",
        "sample",
        "--run",
        trained,
        "--prompt",
        "ROMEO:",
        "--num-chars",
        "40",
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--seed",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == len("ROMEO:") + 40 + 1
    again = cli(
        "charrnn",
        "sample",
        "--run",
        trained,
        "--prompt",
        "ROMEO:",
        "--num-chars",
        "40",
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--seed",
        "1",
    )
    assert again.stdout == result.stdout
    as_json = cli(
        "charrnn",
        "sample",
        "--run",
        trained,
        "--prompt",
        "ROMEO:",
        "--num-chars",
        "40",
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--seed",
        "1",
        "--json",
    )
    assert json.loads(as_json.stdout)["text"] + "\n" == result.stdout


def test_eval_on_a_file_and_on_the_validation_split(cli, trained, tmp_path):
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("ROMEO:\nWhat light is this?\n", encoding="utf-8")
    result = cli("charrnn", "eval", "--run", trained, "--data", held_out, "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["chars"] == len(held_out.read_text()) - 1
    assert (scores["split"], scores["split_size"]) == ("all", scores["chars"])  # the whole file, not a split of it
    assert scores["test_bpc"] == pytest.approx(scores["test_loss"] / 0.6931471805599453)
    assert json.loads((trained / "metrics.json").read_text())["test_bpc"] == scores["test_bpc"]
    own = json.loads(cli("charrnn", "eval", "--run", trained, "--json").stdout)
    assert own["data"] == "builtin:text (validation split)" and own["test_loss"] > 0


def test_empty_file(cli, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    one_line_error(
        cli("charrnn", "train", "--data", tmp_path / "empty.txt", "--output-dir", tmp_path / "r"), "empty.txt is empty"
    )
    assert not (tmp_path / "r").exists()


def test_file_shorter_than_one_block(cli, tmp_path):
    (tmp_path / "short.txt").write_text("To be, or not to be")
    one_line_error(
        cli("charrnn", "train", "--data", tmp_path / "short.txt", "--output-dir", tmp_path / "r"),
        "has 19 characters, fewer than the 130 needed",
        "--block-size 64",
    )


def test_non_utf8_file_suggests_encoding(cli, tmp_path):
    (tmp_path / "latin.txt").write_bytes("Où est le café ?\n".encode("latin-1") * 20)
    one_line_error(
        cli("charrnn", "train", "--data", tmp_path / "latin.txt", "--output-dir", tmp_path / "r"),
        "is not valid utf-8 (byte 0xf9 at offset 1)",
        "--encoding latin-1",
    )
    one_line_error(
        cli("charrnn", "train", "--data", tmp_path / "latin.txt", "--encoding", "klingon"),
        "--encoding 'klingon' is not a known text encoding",
    )


@pytest.mark.parametrize("value", ["0", "-3"])
def test_block_size_must_be_positive(cli, value):
    one_line_error(cli("charrnn", "train", "--block-size", value), f"--block-size must be >= 1 (got {value})")


def test_heads_must_divide_width(cli):
    one_line_error(
        cli("charrnn", "train", "--arch", "transformer", "--hidden-size", "30", "--num-heads", "4"),
        "--hidden-size 30 must be divisible by --num-heads 4",
    )


def test_sample_from_another_groups_run(cli, tmp_path):
    other = tmp_path / "vit_run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_dlkit": {"group": "vit"}}))
    one_line_error(cli("charrnn", "sample", "--run", other), "is a vit run, not a charrnn run")
    one_line_error(cli("charrnn", "sample", "--run", tmp_path / "nothing"), "is not a dlkit run folder")


def test_prompt_with_unknown_characters(cli, trained):
    one_line_error(
        cli("charrnn", "sample", "--run", trained, "--prompt", "ROMEO: Zß€"),
        "--prompt has characters that are not in the run's vocabulary: 'Z', 'ß', '€'",
    )


@pytest.mark.parametrize("value", ["0", "-0.5"])
def test_temperature_must_be_positive(cli, trained, value):
    one_line_error(
        cli("charrnn", "sample", "--run", trained, "--temperature", value),
        f"--temperature must be > 0 (got {float(value)})",
    )


def test_eval_text_with_unseen_characters(cli, trained, tmp_path):
    (tmp_path / "other.txt").write_text("Zß€ Zß€", encoding="utf-8")
    one_line_error(
        cli("charrnn", "eval", "--run", trained, "--data", tmp_path / "other.txt"),
        "characters the model never saw: 'Z', 'ß', '€'",
    )


def test_eval_batch_size_must_be_positive(cli, trained):
    one_line_error(cli("charrnn", "eval", "--run", trained, "--batch-size", "0"), "--batch-size must be >= 1 (got 0)")


def test_offline_hub_id_and_a_builtin_that_is_not_text(cli):
    one_line_error(
        cli("charrnn", "train", "--data", "karpathy/tiny_shakespeare"), "--data karpathy/tiny_shakespeare", "offline"
    )
    one_line_error(
        cli("charrnn", "train", "--data", "builtin:regression"), "--data builtin:regression is not a text corpus"
    )


def test_fine_tune_a_trained_run_on_new_text(cli, trained, tmp_path):
    """--model RUN keeps the run's architecture, vocabulary and weights (a tiny lr leaves them unchanged)."""
    import torch

    from dlkit.builtin.charrnn_text import load_text
    from dlkit.charrnn import models

    (tmp_path / "new.txt").write_text(load_text().text[-1500:], encoding="utf-8")  # characters it has seen
    result = cli(
        "charrnn",
        "train",
        "--data",
        tmp_path / "new.txt",
        "--model",
        trained,
        "--block-size",
        "16",
        "--max-steps",
        "2",
        "--lr",
        "1e-12",
        "--sample-chars",
        "0",
        "--output-dir",
        tmp_path / "tuned",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["arch"] == "gru" and metrics["init_from"].endswith("final")  # not the default --arch lstm
    before, _, chars = models.load(trained / "checkpoints" / "final")
    after, _, tuned_chars = models.load(tmp_path / "tuned" / "checkpoints" / "final")
    assert tuned_chars == chars
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    own = json.loads(cli("charrnn", "eval", "--run", tmp_path / "tuned", "--json").stdout)
    assert own["test_loss"] > 0


def test_fine_tune_errors(cli, trained, tmp_path):
    (tmp_path / "new.txt").write_text("Zebra quiz, jumping foxes! " * 20, encoding="utf-8")
    one_line_error(
        cli("charrnn", "train", "--data", tmp_path / "new.txt", "--model", trained, "--block-size", "16"),
        "1 characters outside the model's vocabulary: 'Z';",
    )
    one_line_error(
        cli("charrnn", "train", "--model", tmp_path / "nowhere"), "is not a charrnn run folder or trained model"
    )


def test_eval_scores_the_held_out_characters_and_train_only_when_asked(cli, trained):
    ids = json.loads((trained / "splits.json").read_text())
    (train,), (val,) = ids["train"], ids["validation"]
    train_end, val_start, val_end = int(train.split()[1].split("-")[1]), *map(int, val.split()[1].split("-"))
    assert train.startswith("chars 0-") and train_end == val_start < val_end  # disjoint, validation last
    own = json.loads(cli("charrnn", "eval", "--run", trained, "--json").stdout)
    assert own["split"] == "validation" and own["split_size"] == val_end - val_start - 1 == own["chars"]
    train_scores = json.loads(cli("charrnn", "eval", "--run", trained, "--split", "train", "--json").stdout)
    assert train_scores["split"] == "train" and train_scores["split_size"] == train_end - 1
    assert "train_bpc" in train_scores and "test_bpc" not in train_scores


def test_eval_and_sample_take_a_config_file_or_a_config_object(cli, trained, tmp_path):
    """--config works for every command: eval with a YAML of its own settings; a notebook calls the same
    function with a config object."""
    from dlkit.charrnn.config import SampleConfig
    from dlkit.charrnn.evaluate import sample

    (tmp_path / "eval.yaml").write_text(f"run: {trained}\nbatch_size: 8\nsplit: validation\n")
    result = cli("--json", "charrnn", "eval", "--config", tmp_path / "eval.yaml")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["split"] == "validation"
    (tmp_path / "bad.yaml").write_text(f"run: {trained}\nbatch_size: 0\n")
    one_line_error(cli("charrnn", "eval", "--config", tmp_path / "bad.yaml"), "--batch-size must be >= 1 (got 0)")
    text = "".join(sample(SampleConfig(run=str(trained), prompt="a", num_chars=5, seed=1)))
    assert text.startswith("a") and len(text) == 6


def test_truncated_final_weights_name_the_checkpoint_and_its_resume_rebuilds_them(cli, trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    weights = run / "checkpoints" / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = one_line_error(
        cli("charrnn", "eval", "--run", run),
        f"{weights}: the safetensors file is truncated",
        "newest checkpoint is",
        "--resume` writes the final model again",
    )
    command = line.split("`")[1].split()  # dlkit charrnn train --config RUN/config.json --output-dir RUN --resume
    assert command[-3:] == ["--output-dir", str(run), "--resume"]
    assert cli(*command[1:]).exit_code == 0
    assert cli("charrnn", "eval", "--run", run).exit_code == 0
