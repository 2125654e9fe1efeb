"""Split the Stanford Dogs download into ImageFolders: data/stanford_dogs/{train,test}/<wnid-breed>/*.jpg
(symlinks), following the official train_list.mat / test_list.mat.

    python examples/clip/prepare_dogs.py RAW_DIR OUT_DIR     # RAW_DIR holds Images/ and the .mat lists
"""

from __future__ import annotations

import sys
from pathlib import Path

from scipy.io import loadmat


def main(raw: Path, out: Path) -> None:
    for split in ("train", "test"):
        listing = loadmat(raw / f"{split}_list.mat")["file_list"]
        for entry in listing:
            relative = str(entry[0][0])  # n02085620-Chihuahua/n02085620_10074.jpg
            target = out / split / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to((raw / "Images" / relative).resolve())
        print(f"{split}: {len(listing)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
