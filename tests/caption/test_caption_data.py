import json
from pathlib import Path

import pytest
from PIL import Image

from dlkit.builtin import BUILTINS
from dlkit.builtin.shapes import COLOURS, ground_truth
from dlkit.caption.data import EOS_ID, PAD_ID, SOS_ID, UNK_ID, Vocab, build_vocab, clean_caption, default_max_len
from dlkit.core.errors import DataError
from dlkit.data.captions import (
    CaptionRecord,
    load_caption_records,
    readable_records,
    records_from_hf,
    split_records,
    write_prepared,
)
from dlkit.data.images import open_image


def write_image(path: Path, mode: str = "RGB", size=(12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


def test_kaggle_layout_with_commas_missing_images_and_empty_captions(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / "Images" / name)
    (tmp_path / "captions.txt").write_text(
        'image,caption\na.jpg,A dog runs , fast .\na.jpg,"A dog, quoted"\nb.jpg,\nb.jpg,A cat .\ngone.jpg,A ghost .\n',
        encoding="utf-8",
    )
    records, stats = load_caption_records(str(tmp_path))
    by_name = {Path(r.image).name: r.captions for r in records}
    assert by_name == {"a.jpg": ["A dog runs , fast .", "A dog, quoted"], "b.jpg": ["A cat ."]}
    assert stats == {
        "images": 2,
        "captions": 3,
        "skipped_missing_images": 1,
        "skipped_empty_captions": 1,
        "layout": "kaggle",
    }
    with pytest.raises(DataError, match=r"captions.txt:4: empty caption for b.jpg"):
        load_caption_records(str(tmp_path), strict=True)
    (tmp_path / "captions.txt").write_text("image,caption\na.jpg,ok\ngone.jpg,A ghost .\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"captions.txt:3: image .*gone.jpg does not exist"):
        load_caption_records(str(tmp_path), strict=True)


def test_original_flickr8k_layout_reads_split_files(tmp_path):
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        write_image(tmp_path / "Flicker8k_Dataset" / name)
    text = tmp_path / "Flickr8k_text"
    text.mkdir()
    (text / "Flickr8k.token.txt").write_text(
        "1.jpg#0\tA man .\n1.jpg#1\tA person .\n2.jpg#0\tA boat .\n3.jpg#0\tA tree .\n", encoding="utf-8"
    )
    for stem, name in (("train", "1.jpg"), ("dev", "2.jpg"), ("test", "3.jpg")):
        (text / f"Flickr_8k.{stem}Images.txt").write_text(name + "\n", encoding="utf-8")
    records, stats = load_caption_records(str(tmp_path))
    assert stats["layout"] == "original" and stats["captions"] == 4
    assert {Path(r.image).name: r.split for r in records} == {"1.jpg": "train", "2.jpg": "val", "3.jpg": "test"}
    splits = split_records(records, seed=5)  # the dataset's own split is kept
    assert [Path(r.image).name for r in splits["val"]] == ["2.jpg"]


def test_karpathy_and_coco_layouts(tmp_path):
    karpathy = tmp_path / "k"
    write_image(karpathy / "Images" / "x.jpg")
    write_image(karpathy / "Images" / "y.jpg", mode="L")
    (karpathy / "dataset_flickr8k.json").write_text(
        json.dumps(
            {
                "images": [
                    {"filename": "x.jpg", "split": "restval", "sentences": [{"raw": "One ."}, {"raw": "Two ."}]},
                    {"filename": "y.jpg", "split": "test", "sentences": [{"raw": "Three ."}]},
                    {"filename": "z.jpg", "split": "val", "sentences": [{"raw": "Missing ."}]},
                ]
            }
        ),
        encoding="utf-8",
    )
    records, stats = load_caption_records(str(karpathy))
    assert [(Path(r.image).name, r.split, r.captions) for r in records] == [
        ("x.jpg", "train", ["One .", "Two ."]),
        ("y.jpg", "test", ["Three ."]),
    ]
    assert stats["layout"] == "karpathy" and stats["skipped_missing_images"] == 1

    coco = tmp_path / "c"
    write_image(coco / "val2014" / "COCO_1.jpg")
    (coco / "annotations").mkdir()
    (coco / "annotations" / "captions_val2014.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "COCO_1.jpg"}],
                "annotations": [{"image_id": 7, "caption": "A plate ."}, {"image_id": 7, "caption": "Food ."}],
            }
        )
    )
    records, stats = load_caption_records(str(coco))
    assert stats["layout"] == "coco" and records[0].split == "val" and records[0].captions == ["A plate .", "Food ."]


def test_unrecognised_folder_names_the_files_looked_for(tmp_path):
    (tmp_path / "notes.md").write_text("hi")
    with pytest.raises(DataError, match=r"no image-caption layout recognised; looked for .*captions.txt \+ Images/"):
        load_caption_records(str(tmp_path))


def test_open_image_converts_modes_and_names_undecodable_files(tmp_path):
    for mode in ("L", "RGBA", "P"):
        image = open_image(write_image(tmp_path / f"{mode}.png", mode=mode))
        assert image.mode == "RGB" and image.size == (12, 10)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"image .*bad.jpg cannot be decoded"):
        open_image(bad)
    records = [CaptionRecord(str(bad), ["x"]), CaptionRecord(str(tmp_path / "L.png"), ["y"])]
    kept, skipped = readable_records(records)
    assert skipped == 1 and [r.captions for r in kept] == [["y"]]
    with pytest.raises(DataError, match="bad.jpg"):
        readable_records(records, strict=True)


def test_clean_caption():
    assert clean_caption("  A Dog's 3 toys, don't!  (big)  ") == "a dogs toys dont big"
    assert clean_caption("Über-café #1 :)") == "über café"
    assert clean_caption(None) == ""


def test_vocab_round_trips_and_pads(tmp_path):
    records = [CaptionRecord("a", ["a red circle", "a blue circle"]), CaptionRecord("b", ["a red square ."])]
    vocab = build_vocab(records, min_freq=2)
    assert vocab.itos == ["<pad>", "<sos>", "<eos>", "<unk>", "a", "circle", "red"]
    ids = vocab.encode("A red circle!", max_len=7)
    assert ids == [SOS_ID, 4, 6, 5, EOS_ID, PAD_ID, PAD_ID]
    assert vocab.encode("a blue circle", max_len=5) == [SOS_ID, 4, UNK_ID, 5, EOS_ID]
    assert vocab.encode("a red circle a red", max_len=4) == [SOS_ID, 4, 6, EOS_ID]  # cut before <eos>
    assert vocab.decode(ids) == "a red circle"
    loaded = Vocab.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded.itos == vocab.itos and loaded.max_len == vocab.max_len and loaded.min_freq == 2
    assert loaded.decode(loaded.encode("a red circle")) == "a red circle"
    assert default_max_len(records) == 3 + 2


def test_split_is_by_image_seeded_and_complete():
    records = [CaptionRecord(f"img{i}", [f"c{i}"]) for i in range(50)]
    splits = split_records(records, seed=3)
    names = {s: {r.image for r in rs} for s, rs in splits.items()}
    assert [len(names[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    again = split_records([CaptionRecord(f"img{i}", [f"c{i}"]) for i in range(50)], seed=3)
    assert {r.image for r in again["test"]} == names["test"]
    other = split_records([CaptionRecord(f"img{i}", [f"c{i}"]) for i in range(50)], seed=4)
    assert {r.image for r in other["test"]} != names["test"]


def test_prepared_layout_round_trips(tmp_path):
    write_image(tmp_path / "i.png")
    records = [CaptionRecord(str(tmp_path / "i.png"), ["A b ."], "test")]
    write_prepared(tmp_path / "prep", records, {"skipped_missing_images": 2})
    loaded, stats = load_caption_records(str(tmp_path / "prep"))
    assert loaded == records and stats["layout"] == "prepared" and stats["skipped_missing_images"] == 2


def test_hub_style_dataset_records(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Value
    from datasets import Image as HFImage

    images = [write_image(tmp_path / f"{i}.png") for i in range(2)]
    features = Features({"image": HFImage(), "caption_0": Value("string"), "caption_1": Value("string")})
    part = Dataset.from_dict(
        {"image": [str(p) for p in images], "caption_0": ["A b .", "C d ."], "caption_1": ["E f .", ""]},
        features=features,
    )
    records, stats = records_from_hf(DatasetDict({"train": part, "validation": part}), tmp_path / "cache")
    assert stats["images"] == 4 and stats["captions"] == 6 and stats["skipped_empty_captions"] == 2
    assert {r.split for r in records} == {"train", "val"}
    assert open_image(records[0].image).size == (12, 10)


def test_builtin_shapes_is_deterministic_with_ground_truth():
    folder = BUILTINS["shapes"].load()
    assert folder == BUILTINS["shapes"].load()
    records, stats = load_caption_records("builtin:shapes")
    assert stats["images"] == 600 and stats["captions"] == 3000 and stats["layout"] == "kaggle"
    truth = ground_truth(folder)
    for record in records[:20]:
        objects = truth["images"][Path(record.image).name]["objects"]
        first = f"{objects[0]['colour']} {objects[0]['shape']}"
        assert record.captions[0].startswith(f"A {first} ")
        image = open_image(record.image)
        for obj in objects:  # the box's centre pixel has the object's colour
            x0, y0, x1, y1 = obj["bbox"]
            assert image.getpixel(((x0 + x1) // 2, y0 + (y1 - y0) * 5 // 8)) == COLOURS[obj["colour"]]
    other = BUILTINS["shapes"].load(num_images=20, seed=1)
    assert ground_truth(other)["images"]["shape_00000.png"] != truth["images"]["shape_00000.png"]


def test_builtin_shape_classes_is_an_image_folder():
    root = BUILTINS["shape-classes"].load()
    classes = sorted(p.name for p in (root / "train").iterdir())
    assert classes == sorted(["circle", "square", "triangle", "star", "diamond", "hexagon"])
    assert sorted(p.name for p in (root / "test").iterdir()) == classes
    assert all(len(list((root / "train" / c).glob("*.png"))) == 40 for c in classes)
    assert all(len(list((root / "test" / c).glob("*.png"))) == 10 for c in classes)


@pytest.mark.parametrize("name", ["../../outside.jpg", "/etc/passwd", "sub/../../../outside.jpg"])
def test_image_names_escaping_the_dataset_folder_are_an_error(tmp_path, name):
    data = tmp_path / "data"
    write_image(data / "Images" / "a.jpg")
    write_image(tmp_path / "outside.jpg")
    (data / "captions.txt").write_text(f"image,caption\na.jpg,A dog .\n{name},A secret .\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"captions.txt:3: .* points outside the dataset folder"):
        load_caption_records(str(data))


def test_json_layouts_check_image_paths_too(tmp_path):
    write_image(tmp_path / "Images" / "a.jpg")
    karpathy = {"images": [{"filename": "a.jpg", "filepath": "../..", "sentences": [{"raw": "A dog ."}]}]}
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps(karpathy), encoding="utf-8")
    with pytest.raises(DataError, match=r"images\[0\]: '../../a.jpg' points outside"):
        load_caption_records(str(tmp_path))
    (tmp_path / "dataset_flickr8k.json").unlink()
    coco = {"images": [{"id": 1, "file_name": "/etc/hostname"}], "annotations": [{"image_id": 1, "caption": "x"}]}
    (tmp_path / "captions_val2014.json").write_text(json.dumps(coco), encoding="utf-8")
    with pytest.raises(DataError, match="image id 1: '/etc/hostname' points outside"):
        load_caption_records(str(tmp_path))


def test_symlinked_image_folder_is_still_inside(tmp_path):
    write_image(tmp_path / "elsewhere" / "a.jpg")
    data = tmp_path / "data"
    data.mkdir()
    (data / "Images").symlink_to(tmp_path / "elsewhere")
    (data / "captions.txt").write_text("image,caption\na.jpg,A dog .\n", encoding="utf-8")
    records, _ = load_caption_records(str(data))
    assert [r.captions for r in records] == [["A dog ."]]
