"""Saliency datasets in the SALICON layout (which MIT1003, CAT2000 and OSIE are usually converted to):

    ROOT/images/{train,val}/NAME.jpg|.jpeg|.png   RGB stimuli
    ROOT/maps/{train,val}/NAME.png                continuous fixation maps (grey, 0-255)
    ROOT/fixations/{train,val}/NAME.png           binary fixation maps (non-zero = fixated)

SALICON ships its fixations as .mat files; convert them to binary PNGs of the image's size (the
form most saliency repositories use). Images may differ in size from one another; each is resized
to the requested resolution on load. An image's map and fixations must have the image's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hwnas.data.split import DataError, Split, resize_fixations, resize_uint8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val")


def _examples(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", *IMAGE_SUFFIXES):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _read(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.array(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def read_split(root: Path, which: str, size: tuple[int, int], limit: int | None = None) -> Split:
    """Read ROOT/*/`which` at (height, width) `size`; every problem is one `DataError`."""
    folders = {kind: root / kind / which for kind in ("images", "maps", "fixations")}
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise DataError(
                f"saliency dataset {root}: missing folder {kind}/{which}; expected images/, maps/ and fixations/ "
                f"each with train/ and val/ (SALICON layout)"
            )
    images = sorted(p for p in folders["images"].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"saliency dataset {root}: no .jpg/.png images in images/{which}")
    images = images[:limit] if limit else images
    pairs, missing = [], []
    for img in images:
        found = {kind: _find(folders[kind], img.stem) for kind in ("maps", "fixations")}
        if None in found.values():
            missing.append(f"{img.name} ({', '.join(k for k, v in found.items() if v is None)})")
        pairs.append((img, found["maps"], found["fixations"]))
    if missing:
        raise DataError(
            f"saliency dataset {root}: {len(missing)} of {len(images)} images in images/{which} have no map or "
            f"fixations: {_examples(missing)}"
        )
    h, w = size
    out_img = torch.empty((len(pairs), 3, h, w), dtype=torch.uint8)
    out_map = torch.empty((len(pairs), 1, h, w), dtype=torch.uint8)
    out_fix = torch.empty((len(pairs), 1, h, w), dtype=torch.bool)
    for i, (img_path, map_path, fix_path) in enumerate(pairs):
        img, sal, fix = _read(img_path, "RGB"), _read(map_path, "L"), _read(fix_path, "L")
        for other, kind in ((sal, "map"), (fix, "fixation map")):
            if other.shape[:2] != img.shape[:2]:
                raise DataError(
                    f"saliency dataset {root}: {img_path.name} is {img.shape[1]}x{img.shape[0]} but its {kind} is "
                    f"{other.shape[1]}x{other.shape[0]}; a map must have its image's size"
                )
        if not fix.any():
            raise DataError(f"saliency dataset {root}: fixation map {fix_path.name} has no fixations")
        out_img[i] = resize_uint8(torch.from_numpy(img).permute(2, 0, 1)[None], size)[0]
        out_map[i] = resize_uint8(torch.from_numpy(sal)[None, None], size)[0]
        out_fix[i] = resize_fixations(torch.from_numpy(fix > 0)[None, None], size)[0]
    return Split(out_img, {"map": out_map, "fix": out_fix})
