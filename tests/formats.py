"""Tiny datasets written in the exact formats users download (for tests of `hwnas.data.layout`).

Each writer makes a few images of mixed sizes with their ground truth as the real release stores
it: SALICON's `.mat` structs (`gaze(k).fixations`, one-based [x y]), MIT1003's `_fixMap.jpg` /
`_fixPts.jpg`, CAT2000's category folders with `fixLocs` matrices, OSIE's single `fixations.mat`
cell array, and the SOD sets' folder names. Each returns what it wrote, for the tests to compare.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

SIZES = ((30, 40), (36, 48), (30, 40))  # (height, width): mixed sizes, as the real sets have


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(name.encode()))


def _image(path: Path, size: tuple[int, int], name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rng(name).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _grey(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def fixation_points(name: str, size: tuple[int, int], n: int = 24) -> np.ndarray:
    """Zero-based rows (y, x), some repeated (a place two observers fixated)."""
    rng = _rng(name)
    pts = np.stack([rng.integers(0, size[0], n), rng.integers(0, size[1], n)], 1)
    return np.concatenate([pts, pts[:3]])


def smooth_map(name: str, size: tuple[int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    m = gaussian_filter(_rng(name + "m").random(size), 3)
    return np.round((m - m.min()) / (m.max() - m.min()) * 255)


def salicon_mat(path: Path, points: np.ndarray, size: tuple[int, int], observers: int = 3) -> None:
    """A SALICON 2017 fixation file: `image`, `resolution`, and `gaze`, a struct per observer with
    `location` (raw samples), `timestamp` and `fixations` (one-based [x y] rows)."""
    gaze = np.zeros((observers, 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    for k, part in enumerate(np.array_split(points, observers)):
        xy = np.stack([part[:, 1] + 1, part[:, 0] + 1], 1).astype(np.float64)  # MATLAB: one-based x, y
        gaze[k, 0] = (xy + 0.3, np.arange(len(part), dtype=np.float64)[:, None], xy)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"image": path.stem, "resolution": np.array([[size[0], size[1]]], dtype=np.float64), "gaze": gaze})


def write_salicon(root: Path, *, counts=(("train", 3), ("val", 3)), test: int = 2) -> dict[str, dict[str, np.ndarray]]:
    written: dict[str, dict[str, np.ndarray]] = {}
    for which, n in counts:
        written[which] = {}
        for i in range(n):
            name, size = f"COCO_{which}2014_{i:012d}", SIZES[i % len(SIZES)]
            _image(root / "images" / which / f"{name}.jpg", size, name)
            _grey(root / "maps" / which / f"{name}.png", smooth_map(name, size))
            pts = fixation_points(name, size)
            salicon_mat(root / "fixations" / which / f"{name}.mat", pts, size)
            written[which][name] = pts
    for i in range(test):
        name = f"COCO_test2014_{i:012d}"
        _image(root / "images" / "test" / f"{name}.jpg", SIZES[i % len(SIZES)], name)
    return written


def write_mit1003(root: Path, n: int = 10) -> dict[str, np.ndarray]:
    written = {}
    for i in range(n):
        name, size = f"i{1000 + i}", SIZES[i % len(SIZES)]
        _image(root / "ALLSTIMULI" / f"{name}.jpeg", size, name)
        _grey(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg", smooth_map(name, size))
        pts = np.unique(fixation_points(name, size), axis=0)  # a binary image: each pixel once
        fix = np.zeros(size, dtype=np.uint8)
        fix[pts[:, 0], pts[:, 1]] = 255
        _grey(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", fix)
        written[name] = pts
    return written


def write_cat2000(root: Path, categories=("Action", "Art"), per: int = 5) -> dict[str, np.ndarray]:
    written = {}
    for cat in categories:
        for i in range(per):
            stem, size = f"{i + 1:03d}", SIZES[i % len(SIZES)]
            name = f"{cat}/{stem}"
            _image(root / "trainSet" / "Stimuli" / cat / f"{stem}.jpg", size, name)
            _grey(root / "trainSet" / "FIXATIONMAPS" / cat / f"{stem}.jpg", smooth_map(name, size))
            pts = np.unique(fixation_points(name, size), axis=0)
            locs = np.zeros(size)
            locs[pts[:, 0], pts[:, 1]] = 1
            (root / "trainSet" / "FIXATIONLOCS" / cat).mkdir(parents=True, exist_ok=True)
            savemat(root / "trainSet" / "FIXATIONLOCS" / cat / f"{stem}.mat", {"fixLocs": locs})
            written[name] = pts
        _image(root / "testSet" / "Stimuli" / cat / "001.jpg", SIZES[0], f"test{cat}")
    return written


def write_osie(root: Path, n: int = 10) -> dict[str, np.ndarray]:
    """OSIE's layout: data/stimuli/NNNN.jpg and data/eye/fixations.mat, a cell per image holding a
    struct with `img` and `subjects`, a cell per subject holding `fix_x`, `fix_y`, `fix_duration`."""
    written, cells = {}, np.empty((n, 1), dtype=object)
    for i in range(n):
        name, size = f"{1001 + i}", SIZES[i % len(SIZES)]
        _image(root / "data" / "stimuli" / f"{name}.jpg", size, name)
        pts = fixation_points(name, size)
        subjects = np.empty((1, 3), dtype=object)
        for k, part in enumerate(np.array_split(pts, 3)):
            subjects[0, k] = {
                "fix_x": part[:, 1].astype(np.float64)[None] + 0.4,  # truncated to integers, as pysaliency reads
                "fix_y": part[:, 0].astype(np.float64)[None] + 0.4,
                "fix_duration": np.full((1, len(part)), 200.0),
            }
        cells[i, 0] = {"img": f"{name}.jpg", "subjects": subjects}
        written[name] = pts
    (root / "data" / "eye").mkdir(parents=True, exist_ok=True)
    savemat(root / "data" / "eye" / "fixations.mat", {"fixations": cells})
    return written


def _mask(name: str, size: tuple[int, int], graded: bool = False) -> np.ndarray:
    h, w = size
    rng = _rng(name)
    mask = np.zeros(size, dtype=np.uint8)
    y, x = int(rng.integers(2, h // 2)), int(rng.integers(2, w // 2))
    mask[y : y + h // 3, x : x + w // 3] = 153 if graded else 255  # PASCAL-S: 60% of annotators
    if graded:
        mask[2:5, 2:5] = 51  # an object only 20% marked: background after thresholding
    return mask


def _sod_pairs(images: Path, masks: Path, prefix: str, n: int, suffix: str, graded: bool = False) -> dict:
    written = {}
    for i in range(n):
        name, size = f"{prefix}{i}", SIZES[i % len(SIZES)]
        _image(images / f"{name}{suffix}", size, name)
        mask = _mask(name, size, graded)
        _grey(masks / f"{name}.png", mask)
        written[name] = mask >= 128
    return written


def write_duts(root: Path, train: int = 10, test: int = 3) -> dict[str, dict]:
    return {
        "train": _sod_pairs(root / "DUTS-TR" / "DUTS-TR-Image", root / "DUTS-TR" / "DUTS-TR-Mask", "tr", train, ".jpg"),
        "test": _sod_pairs(root / "DUTS-TE" / "DUTS-TE-Image", root / "DUTS-TE" / "DUTS-TE-Mask", "te", test, ".jpg"),
    }


def write_ecssd(root: Path, n: int = 3) -> dict:
    return _sod_pairs(root / "images", root / "ground_truth_mask", "", n, ".jpg")


def write_hkuis(root: Path, n: int = 3) -> dict:
    return _sod_pairs(root / "imgs", root / "gt", "", n, ".png")


def write_pascals(root: Path, n: int = 3) -> dict:
    return _sod_pairs(
        root / "datasets" / "imgs" / "pascal", root / "datasets" / "masks" / "pascal", "", n, ".jpg", True
    )


def write_dutomron(root: Path, n: int = 3) -> dict:
    return _sod_pairs(root / "DUT-OMRON-image", root / "pixelwiseGT-new-PNG", "im", n, ".jpg")
