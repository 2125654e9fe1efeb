"""Reading image files as RGB, the one image reader of caption, clip and vit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlkit.core.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def to_rgb(image: Any) -> Any:
    """A PIL image as RGB; transparent pixels become white."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(path: str | Path):
    """The image as RGB (grayscale and palette converted, transparency onto white); DataError naming the file
    if it is missing or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise DataError(f"image {path} cannot be decoded ({reason})") from None


def check_decodable(load: Callable[[int], Any], count: int, where: str, probe: int = 32) -> None:
    """Refuse, before training, images of which not one of the first `probe` decodes: skipping undecodable images
    one by one would otherwise leave nothing but empty batches."""
    first: str | None = None
    for i in range(min(count, probe)):
        try:
            load(i)
            return
        except (DataError, OSError, ValueError, SyntaxError) as exc:
            first = first or str(exc)
    if count:
        raise DataError(f"{where}: none of the first {min(count, probe)} images can be decoded ({first})")
