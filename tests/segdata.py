"""Tiny segmentation datasets written in the layouts users download, for the readers' tests."""

from pathlib import Path

import numpy as np
from PIL import Image

# label ids (cityscapesScripts) -> the train ids they map to: road 7 -> 0, car 26 -> 13, sky 23 -> 10,
# unlabeled 0 -> 255, ego vehicle 1 -> 255, bicycle 33 -> 18
CITYSCAPES_IDS = {7: 0, 26: 13, 23: 10, 0: 255, 1: 255, 33: 18}


def cityscapes_labels(w: int, h: int, shift: int = 0) -> np.ndarray:
    """A (h, w) labelIds map: bands of road, car, sky, unlabeled, ego vehicle, bicycle (rolled by `shift`)."""
    ids = np.array(list(CITYSCAPES_IDS), dtype=np.uint8)
    return np.roll(ids[(np.arange(w) * len(ids)) // w][None].repeat(h, 0), shift, axis=1)


def write_cityscapes(
    root: Path,
    *,
    cities: dict[str, list[str]] | None = None,
    size: tuple[int, int] = (32, 16),
    label_size: tuple[int, int] | None = None,
    bad_id: int | None = None,
    skip_labels: str | None = None,
    test: bool = False,
) -> None:
    """Cityscapes as unzipped: leftImg8bit/{train,val}/CITY/CITY_000000_NNNNNN_leftImg8bit.png and
    gtFine/{train,val}/CITY/..._gtFine_labelIds.png. `bad_id` writes one label id outside 0..33,
    `label_size` labels of another size, `skip_labels` leaves out one city's gtFine folder."""
    cities = cities or {"train": ["aachen", "bochum"], "val": ["frankfurt"]}
    w, h = size
    lw, lh = label_size or size
    rng = np.random.default_rng(0)
    for split, names in cities.items():
        for c, city in enumerate(names):
            images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            if city != skip_labels:
                labels.mkdir(parents=True, exist_ok=True)
            for frame in range(2):
                stem = f"{city}_000000_{frame:06d}"
                pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(images / f"{stem}_leftImg8bit.png")
                if city == skip_labels:
                    continue
                ids = cityscapes_labels(lw, lh, shift=c + frame)
                if bad_id is not None:
                    ids[0, 0] = bad_id
                Image.fromarray(ids).save(labels / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(ids).save(labels / f"{stem}_gtFine_instanceIds.png")  # present in the download
    if test:
        folder = root / "leftImg8bit" / "test" / "berlin"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / "berlin_000000_000019_leftImg8bit.png"
        )


def write_images_masks(
    root: Path, *, classes: list[str], n: int = 6, size: tuple[int, int] = (16, 12), bad_id: int | None = None
) -> None:
    """images/NAME.jpg, masks/NAME.png (palette PNGs: their indices are the ids) and classes.txt."""
    w, h = size
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"img{i}.jpg")
        ids = (np.arange(w)[None].repeat(h, 0) * len(classes) // w).astype(np.uint8)
        ids[: h // 4] = 255
        if bad_id is not None:
            ids[-1, -1] = bad_id
        mask = Image.fromarray(ids).convert("P")
        mask.putpalette([v for c in range(256) for v in (c * 40 % 256, c * 90 % 256, c * 150 % 256)])
        mask.save(root / "masks" / f"img{i}.png")
