"""Training checkpoints: one self-contained file per run, written atomically, read with weights_only.

A checkpoint holds the search space's TOML text, the task, the model (a supernet or one static
subnet), and everything exact resume needs: optimizer, scheduler, teacher, torch RNG, epoch,
history. It is a plain dict of tensors and primitives, so `torch.load(..., weights_only=True)` reads
it without unpickling code.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.errors import CheckpointError, HwnasError
from hwnas.files import atomic_write_bytes
from hwnas.space import DEFAULT_SPACE, SearchSpace

FORMAT = "hwnas-checkpoint"
VERSION = 1
KINDS = ("supernet", "subnet")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` (plus the format tag) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _unreadable(path: Path, exc: Exception, reads: str) -> str:
    """One whole sentence for a file `torch.load(weights_only=True)` refused (torch's own text is
    many lines and cut anywhere it would be shortened); `reads` says what hwnas does read."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+) was not an allowed global", str(exc))
    if found and not found.group(1).startswith("__"):  # garbage bytes can spell a GLOBAL opcode too
        return (
            f"checkpoint {path} holds Python objects beyond tensors and plain values ({found.group(1)}), which "
            f"a safe (weights_only) load refuses; hwnas reads only {reads}"
        )
    return f"checkpoint {path} is corrupted or not a torch file ({type(exc).__name__} while reading it)"


def safe_load(path: str | Path, *, reads: str = "its own checkpoints (`hwnas train supernet`)") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; a missing, damaged or code-carrying file is
    one `CheckpointError` (`reads` ends its sentence: what hwnas reads instead)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # garbage also triggers pickle-protocol warnings
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage makes torch.load raise almost anything (IndexError, KeyError, ...)
        raise CheckpointError(_unreadable(path, exc, reads)) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check an hwnas checkpoint; every problem is one `CheckpointError`."""
    path = Path(path)
    return check_checkpoint(safe_load(path), path)


def check_checkpoint(data: Any, path: Path) -> dict[str, Any]:
    """`data`, read from `path`, if it is a well-formed hwnas checkpoint; else one `CheckpointError`."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not an hwnas checkpoint (a bare state_dict or another tool's file?); "
            "train one with `hwnas train supernet`"
        )
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {data['version']}; this hwnas reads {VERSION}")
    for key in ("kind", "task", "space_toml", "model", "epoch"):
        if key not in data:
            raise CheckpointError(f"checkpoint {path} lacks '{key}'; it is truncated or was written by a broken tool")
    if data["kind"] not in KINDS:
        raise CheckpointError(f"checkpoint {path} holds a '{data['kind']}', expected one of {KINDS}")
    return data


def checkpoint_space(data: dict[str, Any], path: str | Path) -> SearchSpace:
    """The search space embedded in a checkpoint."""
    try:
        return SearchSpace.from_toml(data["space_toml"], source=f"checkpoint {path}")
    except HwnasError as exc:
        raise CheckpointError(f"checkpoint {path}: its embedded search space is invalid ({exc})") from None


def check_space(data: dict[str, Any], space: SearchSpace, path: str | Path) -> None:
    """Refuse a checkpoint trained on another search space."""
    ours = checkpoint_space(data, path)
    if ours.digest() != space.digest():
        raise CheckpointError(
            f"checkpoint {path} was trained on space '{ours.name}' (digest {ours.digest()}), "
            f"not on '{space.name}' (digest {space.digest()})"
        )


def build_model(data: dict[str, Any], path: str | Path) -> nn.Module:
    """The trained supernet or subnet of a checkpoint, weights loaded, in eval mode."""
    from hwnas.nn.supernet import Supernet, build_subnet

    space = checkpoint_space(data, path)
    num_classes = int(data.get("num_classes", 1))
    if data["kind"] == "supernet":
        model = Supernet(space, task=data["task"], num_classes=num_classes)
    else:
        model = build_subnet(space, space.arch_from_dict(data["arch"]), task=data["task"], num_classes=num_classes)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
    return model.eval()


def checkpoint_data(data: dict[str, Any], path: str | Path, space: SearchSpace, override: str | None = None):
    """The `DataSet` a checkpoint was trained on, rebuilt at the space's largest resolution with the
    training seed and sizes (for BN recalibration and scoring), or the folder `override`.

    A built-in source (synthetic, digits) is rebuilt from its name; a folder must be given again.
    """
    from hwnas.data import SOURCES, load_data

    source = override or data.get("data")
    if override is None and data.get("converted_from"):
        raise CheckpointError(
            f"{path} was converted from the authors' checkpoint (`hwnas convert`) and names no data; pass a "
            "folder of the task's data with --data to re-estimate a subnet's BN statistics"
        )
    if override is None and source not in SOURCES:
        raise CheckpointError(
            f"{path} was trained on the folder '{source}'; pass its path with --data to rebuild its batches"
        )
    train_size, val_size = data.get("data_size", (512, 128))
    w, h = space.max().resolution
    seed = int(data.get("config", {}).get("seed", 0))
    return load_data(
        source, task=data["task"], size=(h, w), seed=seed, train_size=int(train_size), val_size=int(val_size)
    )


def bn_batches(data: dict[str, Any]) -> int:
    """How many training batches re-estimate a subnet's BN statistics (the run's `bn_batches`)."""
    return int(data.get("config", {}).get("bn_batches", 8))


def file_digest(path: str | Path) -> str:
    """sha256 of a file, for manifests that name the checkpoint they came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_space(space: str | Path | None, checkpoint: str | Path | None = None) -> SearchSpace:
    """--space as every verb reads it: the preset or file given; else the checkpoint's (when a verb
    takes one); else alphanet. A space given beside a checkpoint is checked against it by its reader."""
    if space is None and checkpoint is not None:
        return checkpoint_space(load_checkpoint(checkpoint), Path(checkpoint))
    return SearchSpace.load(space or DEFAULT_SPACE)
