"""The images an int8 export is calibrated on (`hwnas export --precision int8 --calibration DATA`).

Post-training static quantization sets each activation's int8 range from the values it takes on
sample inputs (ONNX Runtime's `quantize_static`, ai-edge-quantizer's calibration); the samples must
be images as the model sees them: resized to its input and normalised with the checkpoint's mean and
std. DATA is a built-in set (synthetic, digits: its training images), a dataset folder in any
format `hwnas data check` reads (its training images), or any folder of .jpg/.jpeg/.png images
(read recursively). By default the checkpoint's own training data is used. The checks
(`check_count`, `check_calibration`) import no torch, so the CLI runs them before it loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_IMAGES = 64


@dataclass(frozen=True)
class Calibration:
    """`images`: each a normalised (1, 3, h, w) float32 array; `source` says where they came from."""

    images: list[np.ndarray]
    source: str
    kind: str  # "built-in", "dataset" or "images"

    def input_sets(self) -> list[list[np.ndarray]]:
        """One input set per image, as the quantizers take them."""
        return [[x] for x in self.images]

    def to_dict(self) -> dict:
        return {"data": self.source, "kind": self.kind, "images": len(self.images)}


def check_count(count: int) -> int:
    if count < 1:
        raise HwnasError(f"--calibration-images must be at least 1, got {count}")
    return count


def check_calibration(data: str) -> None:
    """`data` is a folder holding images, or a built-in set: a one-line error if not."""
    if Path(data).is_dir():
        image_files(Path(data))
        return
    from hwnas.data import SOURCES

    if data not in SOURCES:
        raise HwnasError(
            f"--calibration {data} is neither a built-in set ({', '.join(SOURCES)}) nor an existing folder"
        )


def image_files(folder: Path) -> list[Path]:
    """Every image under the folder `folder` (recursively), sorted, or a one-line error when there is none."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise HwnasError(
            f"--calibration folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}) and is not a dataset folder"
        )
    return files


def calibration_set(
    data: str,
    *,
    task: str,
    resolution: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    count: int = DEFAULT_IMAGES,
    seed: int = 0,
) -> Calibration:
    """`count` images of `data` at `resolution` (width, height), spread evenly over what it holds."""
    from hwnas.data import SOURCES, DataError, load_data, load_folder

    check_count(count)
    check_calibration(data)
    w, h = resolution
    if data in SOURCES:
        dataset = load_data(data, task=task, size=(h, w), seed=seed, train_size=count, val_size=1)
        return Calibration(_normalised(dataset.train, count, mean, std), data, "built-in")
    folder = Path(data)
    try:
        dataset = load_folder(folder, task=task, size=(h, w), seed=seed)
    except DataError:
        return Calibration(_folder_images(image_files(folder), count, (h, w), mean, std), str(folder), "images")
    return Calibration(_normalised(dataset.train, count, mean, std), str(folder), "dataset")


def _spread(total: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64))


def _normalise(images, mean: tuple[float, ...], std: tuple[float, ...]) -> list[np.ndarray]:
    """uint8 (N, 3, h, w) images -> normalised float32 (1, 3, h, w) arrays."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    x = (np.asarray(images, dtype=np.float32) / 255 - m) / s
    return [x[i : i + 1].astype(np.float32) for i in range(len(x))]


def _normalised(split, count: int, mean, std) -> list[np.ndarray]:
    rows = split.rows(_spread(len(split), count))
    return _normalise(rows["image"].numpy(), mean, std)


def _folder_images(files: list[Path], count: int, size: tuple[int, int], mean, std) -> list[np.ndarray]:
    from PIL import Image

    from hwnas.data.split import image_at

    images = []
    for i in _spread(len(files), count):
        try:
            with Image.open(files[i]) as img:
                rgb = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise HwnasError(f"--calibration image {files[i]} cannot be read ({exc})") from None
        images.append(image_at(rgb, size).numpy())
    return _normalise(np.stack(images), mean, std)
