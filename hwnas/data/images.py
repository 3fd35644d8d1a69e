"""Reading image files (Pillow): every failure is one `DataError` naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwnas.data.split import DataError


def read_image(path: Path, mode: str) -> np.ndarray:
    """The image at `path` converted to Pillow `mode` ("RGB" or "L") as a uint8 array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.array(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def size_text(shape: tuple[int, ...]) -> str:
    """(height, width, ...) as the usual WIDTHxHEIGHT."""
    return f"{shape[1]}x{shape[0]}"


def check_same_size(
    layout, image: Path, shape: tuple[int, ...], target: Path, target_shape: tuple[int, ...], what: str
) -> None:
    """A `DataError` unless a ground-truth `what` ("mask", "label map") has its image's (height, width)."""
    if tuple(target_shape[:2]) != tuple(shape[:2]):
        raise DataError(
            f"{layout.format} dataset {layout.root}: {image.name} is {size_text(shape)} but its {what} "
            f"{target.name} is {size_text(target_shape)}; a {what} must have its image's size"
        )


__all__ = ["check_same_size", "image_size", "read_image", "size_text"]
