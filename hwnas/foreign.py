"""Checkpoints of the authors' code, read safely: AlphaNet / AttentiveNAS ImageNet supernets and
SalNAS saliency supernets (issue 20's `hwnas convert`).

Their training code saves `{'state_dict': model.state_dict(), ...}` from a DDP-wrapped model, so
every key starts with `module.` (AttentiveNAS `utils/saver.py`; SalNAS `train_salnas.py`). The
layout is told by the keys each model alone has (read off the authors' modules, see
`tests/data/salnas/`):

- `salnas`: `decode_output0` ... `decode_output6`, the saliency decoder of SalNAS's
  `AttentiveNasDynamicModel` (chakkritte/SalNAS `salnas/models/attentive_nas_dynamic_model.py`);
- `attentivenas`: `classifier.linear.linear.weight` and the v3 head's
  `last_conv.feature_mix_layer`, AttentiveNAS's / AlphaNet's ImageNet supernet
  (`models/attentive_nas_dynamic_model.py`).

Both share `first_conv`, `blocks.N.mobile_inverted_conv`, `blocks.N.shortcut` and
`last_conv.final_expand_layer`. Files load with `weights_only=True`: a pickle that needs code is
refused, never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hwnas.errors import CheckpointError
from hwnas.train.checkpoint import safe_load

LAYOUTS = ("salnas", "attentivenas")
_COMMON = ("first_conv.conv.conv.weight", "last_conv.final_expand_layer.conv.conv.weight")
_OWN = {
    "salnas": ("decode_output0.0.conv.conv.weight", "decode_output6.conv.conv.weight"),
    "attentivenas": ("last_conv.feature_mix_layer.conv.conv.weight", "classifier.linear.linear.weight"),
}
_READS = "tensors: the authors' checkpoints ({'state_dict': ...}, as their training code saves them)"


@dataclass(frozen=True)
class ForeignCheckpoint:
    """An authors' supernet checkpoint: its layout and its state dict, keys without `module.`."""

    layout: str
    state: dict[str, torch.Tensor]
    path: Path

    @property
    def blocks(self) -> int:
        """How many MBConv blocks the supernet holds (all stages, each at its largest depth)."""
        return len({key.split(".")[1] for key in self.state if key.startswith("blocks.")})


def read_foreign(path: str | Path) -> ForeignCheckpoint:
    """The checkpoint at `path`, checked: a dict of tensors (under `state_dict`, `model` or at the
    top), `module.` prefixes removed, of one of `LAYOUTS`; every problem is one `CheckpointError`."""
    path = Path(path)
    data = safe_load(path, reads=_READS)
    state = _state_dict(data, path)
    layout = _layout(state, path)
    return ForeignCheckpoint(layout, state, path)


def _state_dict(data: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"checkpoint {path} holds no state dict (a dict of tensors, at the top or under 'state_dict'): "
            "not an AlphaNet, AttentiveNAS or SalNAS checkpoint"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in data.items()}


def _layout(state: dict[str, torch.Tensor], path: Path) -> str:
    found = [name for name, keys in _OWN.items() if all(k in state for k in (*_COMMON, *keys))]
    if len(found) != 1:
        example = next(iter(state))
        raise CheckpointError(
            f"checkpoint {path} is not an AlphaNet/AttentiveNAS or SalNAS supernet (its keys look like "
            f"'{example}'; expected '{_COMMON[0]}' with '{_OWN['attentivenas'][1]}' or '{_OWN['salnas'][0]}')"
        )
    return found[0]
