"""Image data: ImageFolder layouts, corrupt images skipped and counted, Hub datasets, processor transforms."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dlkit.core.errors import DataError
from dlkit.data.images import open_image
from dlkit.vit import data as vdata
from dlkit.vit.config import VitConfig


def folder(root, classes, per_class=4, size=(12, 10), mode="RGB"):
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new(mode, size, 60 * i).save(root / name / f"{i}.png")
    return root


def test_flat_image_folder_gets_a_per_class_holdout(tmp_path):
    folder(tmp_path, ["cat", "dog", "eel"], per_class=10)
    data = vdata.load_image_data(VitConfig(data=str(tmp_path), val_fraction=0.2))
    assert data.label_names == ["cat", "dog", "eel"]
    assert len(data.train) == 24 and sorted(data.val.labels) == [0, 0, 1, 1, 2, 2]
    assert not set(data.train.paths) & set(data.val.paths)


def test_train_and_validation_subfolders(tmp_path):
    folder(tmp_path / "train", ["a", "b"])
    folder(tmp_path / "validation", ["b"], per_class=2)
    data = vdata.load_image_data(VitConfig(data=str(tmp_path)))
    assert data.val_split == "validation" and data.val.labels == [1, 1] and len(data.train) == 8
    assert data.test is None
    folder(tmp_path / "validation", ["zebra"], per_class=1)
    with pytest.raises(DataError, match="class 'zebra' is not among the training classes"):
        vdata.load_image_data(VitConfig(data=str(tmp_path)))


def test_validation_picks_checkpoints_and_test_is_kept_for_eval(tmp_path):
    """train/, val/ and test/: validation is the data's own val/, test/ is only for eval; train/ and test/ alone:
    validation is a seeded share of train/, never test/."""
    folder(tmp_path / "train", ["a", "b"], per_class=5)
    folder(tmp_path / "test", ["a", "b"], per_class=3)
    data = vdata.load_image_data(VitConfig(data=str(tmp_path), val_fraction=0.2))
    assert len(data.train) == 8 and len(data.val) == 2 and data.val_split == "held-out 20% of train"
    assert len(data.test) == 6 and data.test_split == "test"
    assert {p.parent.parent.name for p in data.train.paths + data.val.paths} == {"train"}
    folder(tmp_path / "val", ["a"], per_class=2)
    data = vdata.load_image_data(VitConfig(data=str(tmp_path)))
    assert len(data.train) == 10 and data.val_split == "val" and data.val.labels == [0, 0] and len(data.test) == 6
    assert "validation from the data's val split; test from the data's test split" in data.rule(VitConfig())
    assert [len(ids) for ids in data.ids().values()] == [10, 2, 6]


def test_unlabelled_test_folder_is_left_out_with_a_warning(tmp_path, capsys):
    folder(tmp_path / "train", ["a", "b"], per_class=5)
    (tmp_path / "test").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "0001.png")
    data = vdata.load_image_data(VitConfig(data=str(tmp_path)))
    assert data.test is None and len(data.val) == 2
    assert "has no class folders (unlabelled images): it is left out" in capsys.readouterr().err


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    folder(tmp_path, ["a", "b"], per_class=2)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    items = vdata.image_folder(tmp_path)[1]["train"]
    counter: dict[str, int] = {}
    dataset = vdata.ImageSet(items, lambda image: torch.zeros(1), counter)
    batch = vdata.collate([dataset[i] for i in range(len(dataset))])
    assert len(items) == 5 and batch["labels"].tolist() == [0, 0, 1, 1] and counter == {"skipped": 1}


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("L", (4, 4), 7).save(tmp_path / "gray.png")
    assert open_image(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)  # onto white
    assert open_image(tmp_path / "gray.png").getpixel((0, 0)) == (7, 7, 7)


def test_hub_dataset_labels_come_from_its_class_label(monkeypatch):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["plane", "car"])})
    images = [Image.new("RGB", (8, 8), c) for c in (0, 90, 180)]
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"img": images, "label": [0, 1, 1]}, features=features),
            "test": datasets.Dataset.from_dict({"img": images[:1], "label": [1]}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id: splits)
    names, found = vdata.hub_images("cifar10", None, None)
    assert names == ["plane", "car"] and found["train"].labels == [0, 1, 1] and found["test"].labels == [1]
    assert found["train"].load(1).size == (8, 8) and found["test"].describe(0) == "cifar10:test[0]"
    with pytest.raises(DataError, match="no label column"):
        vdata.hub_images("cifar10", None, "fine_label")
    splits["validation"] = splits.pop("test")
    splits["test"] = datasets.Dataset.from_dict({"img": images[:2], "label": [-1, -1]}, features=features)
    names, found = vdata.hub_images("beans", None, None)
    assert set(found) == {"train", "validation"}  # a test split without labels (-1) is left out
    splits["train"] = datasets.Dataset.from_dict({"img": images, "label": [0, -1, 1]}, features=features)
    assert vdata.hub_images("beans", None, None)[1]["train"].rows == [0, 2]


def test_transforms_follow_a_deit_processor_with_a_centre_crop():
    from transformers import DeiTImageProcessor

    processor = DeiTImageProcessor()  # resize 256, crop 224
    train_tf, eval_tf, side = vdata.transforms(processor, None, augment=True)
    image = Image.new("RGB", (300, 400))
    assert side == 224 and eval_tf(image).shape == (3, 224, 224) and train_tf(image).shape == (3, 224, 224)
    assert vdata.transforms(processor, 112, augment=False)[1](image).shape == (3, 112, 112)
