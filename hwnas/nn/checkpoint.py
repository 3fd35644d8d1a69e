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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.errors import CheckpointError, HwnasError
from hwnas.files import atomic_write_bytes
from hwnas.space import DEFAULT_SPACE, Arch, SearchSpace

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


@dataclass(frozen=True)
class Checkpoint:
    """An hwnas checkpoint as read: its checked payload, the search space it embeds, and its model."""

    path: Path
    data: dict[str, Any]
    space: SearchSpace

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def num_classes(self) -> int:
        return int(self.data.get("num_classes", 1))

    @property
    def arch(self) -> Arch | None:
        """A subnet checkpoint's own arch (None for a supernet)."""
        return self.space.arch_from_dict(self.data["arch"]) if self.kind == "subnet" else None

    def model(self) -> nn.Module:
        """The trained supernet or subnet (built by `hwnas.nn.create`), weights loaded, in eval mode."""
        from hwnas.nn.factory import create

        model = create(self.space, task=self.task, num_classes=self.num_classes, arch=self.arch)
        try:
            model.load_state_dict(self.data["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint {self.path}: weights do not fit the model ({str(exc).splitlines()[0]})"
            ) from None
        return model.eval()


def load(path: str | Path, *, space: SearchSpace | None = None) -> Checkpoint:
    """Read and check an hwnas checkpoint (`weights_only`); with `space`, refuse one trained on another
    space. Every problem is one `CheckpointError`."""
    path = Path(path)
    return checked(safe_load(path), path, space=space)


def checked(data: Any, path: Path, *, space: SearchSpace | None = None) -> Checkpoint:
    """`data`, read from `path`, as a `Checkpoint` if it is a well-formed hwnas checkpoint (of `space`,
    if given); else one `CheckpointError`."""
    check_checkpoint(data, path)
    ours = checkpoint_space(data, path)
    if space is not None and ours.digest() != space.digest():
        raise CheckpointError(
            f"checkpoint {path} was trained on space '{ours.name}' (digest {ours.digest()}), "
            f"not on '{space.name}' (digest {space.digest()})"
        )
    return Checkpoint(path, data, ours)


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
        return load(checkpoint).space
    return SearchSpace.load(space or DEFAULT_SPACE)
