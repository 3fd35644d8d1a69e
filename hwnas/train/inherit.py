"""Where a supernet's training starts (`hwnas train supernet --init`): the weights of another
checkpoint — an hwnas supernet of this or another task, or the authors' own AlphaNet/AttentiveNAS
or SalNAS checkpoint, converted as `hwnas convert` does — on a fresh supernet of this space.

The encoder (stem, MBConv stages, last conv) must come across whole, every tensor with its shape;
the head comes across when the checkpoint holds one for the same task, else it keeps its fresh
initialisation. SalNAS starts its supernet this way from AlphaNet's ImageNet weights (SalNAS
Section 3.1.2 and 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hwnas.errors import CheckpointError
from hwnas.nn.checkpoint import FORMAT, check_checkpoint, safe_load
from hwnas.space import SearchSpace
from hwnas.space.tasks import base_task

ENCODER = ("stem", "stages", "last")


@dataclass(frozen=True)
class Inherited:
    """What `inherit` took from where."""

    source: Path
    kind: str  # e.g. "hwnas saliency supernet", "salnas checkpoint"
    loaded: int
    fresh: list[str]  # top-level parts of the model left as initialised (e.g. ["head"])


def inherit(model: nn.Module, init: str | Path, *, space: SearchSpace, task: str) -> Inherited:
    """Load `init`'s weights into `model` (a fresh `Supernet` of `space` for `task`) and say what came
    across; an encoder that does not fit is one `CheckpointError`."""
    path = Path(init)
    state, kind, head_too = _weights(path, space, task)
    target = model.state_dict()
    take = {
        k: v
        for k, v in state.items()
        if k in target and tuple(v.shape) == tuple(target[k].shape) and (head_too or k.split(".")[0] in ENCODER)
    }
    missing = [k for k in target if k.split(".")[0] in ENCODER and k not in take]
    if missing:
        shape = tuple(state[missing[0]].shape) if missing[0] in state else "absent"
        raise CheckpointError(
            f"--init {path}: its encoder does not fit space '{space.name}' ('{missing[0]}' is {shape}, "
            f"expected {tuple(target[missing[0]].shape)}); pass the space it was trained on with --space"
        )
    model.load_state_dict({**target, **take})
    fresh = sorted({k.split(".")[0] for k in target if k not in take})
    return Inherited(path, kind, len(take), fresh)


def _weights(path: Path, space: SearchSpace, task: str) -> tuple[dict[str, torch.Tensor], str, bool]:
    """(hwnas-keyed weights, what the file is, whether its head is for `task`)."""
    data = safe_load(path, reads="hwnas checkpoints and the authors' AlphaNet/AttentiveNAS/SalNAS checkpoints")
    if isinstance(data, dict) and data.get("format") == FORMAT:
        data = check_checkpoint(data, path)
        if data["kind"] != "supernet":
            raise CheckpointError(f"--init {path} holds one subnet; a supernet checkpoint is needed")
        return data["model"], f"hwnas {data['task']} supernet", base_task(data["task"]) == base_task(task)
    from hwnas.nn.authors import convert, read_foreign

    foreign = read_foreign(path)
    conversion = convert(foreign, space, task=task)
    state = {k: v for k, v in conversion.state.items() if k not in set(conversion.fresh)}
    return state, f"{foreign.layout} checkpoint", True
