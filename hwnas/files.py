"""Atomic file writes: a temp file in the target folder, then `os.replace`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise HwnasError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def writable_folder(folder: str | Path) -> Path:
    """Create `folder` if needed and prove a file can be written in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HwnasError(f"output folder {folder} is a file; pass a folder with --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise HwnasError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None
    return folder


def writable_file(path: str | Path, *, what: str = "output file") -> Path:
    """Prove `path` can be written later, before any work, creating nothing: it is not a folder,
    and its nearest existing ancestor is a folder a file can be made in."""
    path = Path(path)
    if path.is_dir():
        raise HwnasError(f"{what} {path} is a folder; pass a file path")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HwnasError(f"{what} {path} is not writable: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise HwnasError(f"{what} {path} is not writable ({exc.strerror or exc})") from None
    return path


def nan_to_none(scores: dict[str, float | None]) -> dict[str, float | None]:
    """Scores with each NaN (a score not defined on the set, such as an absent class's IoU) as None,
    which JSON can hold."""
    return {k: None if v is None or v != v else v for k, v in scores.items()}


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: str | Path, *, what: str, error: type[HwnasError] = HwnasError) -> Any:
    """Parse a JSON file a user gave; a missing or malformed file is one `error` naming `what` it is."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON ({exc})") from None


def atomic_replace_dir(staged: str | Path, path: str | Path) -> Path:
    """Move the finished folder `staged` to `path` (a sibling), replacing an older `path` whole.

    Readers see the old folder or the new one; an old one is moved aside first and deleted last.
    """
    staged, path = Path(staged), Path(path)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.replace(path, old / path.name)
    try:
        os.replace(staged, path)
    except BaseException:
        if old is not None:
            os.replace(old / path.name, path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path
