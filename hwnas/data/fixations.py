"""Fixations as the datasets store them, read into integer rows (y, x) (zero-based, one row per
fixation, repeated as often as it occurs) and checked against the image's (height, width).

- SALICON 2017 `.mat`: `gaze`, a struct per observer, each with `fixations` (rows [x y], MATLAB's
  one-based pixels; pysaliency's `get_SALICON` reads them the same way);
- CAT2000 `FIXATIONLOCS/*.mat`: `fixLocs`, a binary matrix of the image's size;
- OSIE `fixations.mat`: a cell per image (`img`, `subjects`), each subject's `fix_x`, `fix_y`
  (read as pysaliency's `get_OSIE` does: truncated to integers);
- a binary image (converted SALICON layouts, MIT1003's `_fixPts.jpg`): its pixels above a threshold.

Fixations outside the image are dropped (`clipped` says how many were).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwnas.data.split import DataError


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path)
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise DataError(f"cannot read fixations {path}: {exc}") from None


def inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The rows of `points` that lie in an image of (height, width) `size`."""
    ok = (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] < size[0]) & (points[:, 1] < size[1])
    return points[ok]


def _rows(xs: np.ndarray, ys: np.ndarray, offset: float) -> np.ndarray:
    xs, ys = np.asarray(xs, dtype=np.float64).ravel(), np.asarray(ys, dtype=np.float64).ravel()
    keep = np.isfinite(xs) & np.isfinite(ys)
    return np.stack([np.floor(ys[keep] - offset), np.floor(xs[keep] - offset)], 1).astype(np.int64)


def read_salicon_mat(path: Path) -> np.ndarray:
    """Every observer's fixations of one SALICON `.mat` file."""
    data = _loadmat(path)
    if "gaze" not in data:
        raise DataError(f"SALICON fixations {path} have no 'gaze' struct (keys: {', '.join(_keys(data))})")
    gaze = data["gaze"].ravel()
    if gaze.dtype.names is None or "fixations" not in gaze.dtype.names:
        raise DataError(f"SALICON fixations {path}: 'gaze' has no 'fixations' field")
    parts = [np.asarray(g["fixations"], dtype=np.float64).reshape(-1, 2) for g in gaze]
    fix = np.concatenate(parts) if parts else np.zeros((0, 2))
    return _rows(fix[:, 0], fix[:, 1], offset=1.0)


def read_cat2000_mat(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The fixated pixels of a CAT2000 `fixLocs` matrix, and the matrix's (height, width)."""
    data = _loadmat(path)
    if "fixLocs" not in data:
        raise DataError(f"CAT2000 fixations {path} have no 'fixLocs' matrix (keys: {', '.join(_keys(data))})")
    locs = np.asarray(data["fixLocs"])
    return np.argwhere(locs > 0).astype(np.int64), (int(locs.shape[0]), int(locs.shape[1]))


def read_osie(path: Path) -> dict[str, np.ndarray]:
    """{image file name: its fixations} from OSIE's one `fixations.mat`."""
    if not path.is_file():
        raise DataError(f"OSIE fixations {path} are missing (data/eye/fixations.mat)")
    data = _loadmat(path)
    if "fixations" not in data:
        raise DataError(f"OSIE fixations {path} have no 'fixations' cell array (keys: {', '.join(_keys(data))})")
    out = {}
    try:
        for cell in data["fixations"].ravel():
            entry = cell.ravel()[0] if cell.dtype == object else cell
            entry = entry.ravel()[0]
            name = str(np.asarray(entry["img"]).ravel()[0])
            rows = []
            for subject in np.asarray(entry["subjects"]).ravel():
                subject = subject.ravel()[0]
                rows.append(_rows(subject["fix_x"], subject["fix_y"], offset=0.0))
            out[name] = np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise DataError(
            f"OSIE fixations {path} are not in OSIE's structure (img, subjects.fix_x/fix_y): {exc}"
        ) from None
    return out


def read_fixation_image(path: Path, threshold: int = 0) -> np.ndarray:
    """The pixels of a grey fixation image above `threshold`."""
    from hwnas.data.images import read_image

    return np.argwhere(read_image(path, "L") > threshold).astype(np.int64)


def density(points: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """A continuous map in [0, 1]: the fixation counts blurred by a Gaussian of `sigma` pixels."""
    from scipy.ndimage import gaussian_filter

    counts = np.zeros(size)
    np.add.at(counts, (points[:, 0], points[:, 1]), 1.0)
    blurred = gaussian_filter(counts, sigma, mode="constant")
    return blurred / blurred.max() if blurred.max() > 0 else blurred


def _keys(data: dict) -> list[str]:
    return [k for k in data if not k.startswith("__")] or ["none"]


__all__ = ["density", "inside", "read_cat2000_mat", "read_fixation_image", "read_osie", "read_salicon_mat"]
