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

`convert` maps their keys onto an hwnas `Supernet` of a space with the same structure (`alphanet`,
`alphanet-imagenet`, or a .toml of the reduced widths): every encoder tensor comes across as it is,
shapes checked; their unused tensors (`bn_tracking`, the shortcut convs of blocks whose widths never
differ) are dropped; what the checkpoint lacks (the saliency decoder of an ImageNet supernet) is
initialised fresh and named.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import ArchError, CheckpointError, HwnasError
from hwnas.nn.checkpoint import safe_load
from hwnas.space import Arch, SearchSpace, StageArch

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
        for key in ("state_dict", "student", "model"):  # SalNAS's train_salnas.py saves {'student': ...}
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"checkpoint {path} holds no state dict (a dict of tensors, at the top or under 'state_dict' or "
            "'student'): "
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


# --------------------------------------------------------------------------------------------
# Their keys -> hwnas's
# --------------------------------------------------------------------------------------------
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_MBCONV = (("expand", "inverted_bottleneck"), ("depthwise", "depth_conv"), ("project", "point_linear"))


def _conv_bn(ours: str, theirs: str) -> Iterator[tuple[str, str]]:
    """A conv-BN(-act) layer: their `DynamicConvBnActLayer` (`conv.conv`, `bn.bn`) -> hwnas's."""
    yield f"{ours}.conv.weight", f"{theirs}.conv.conv.weight"
    for stat in _BN:
        yield f"{ours}.bn.{stat}", f"{theirs}.bn.bn.{stat}"


def _encoder_keys(space: SearchSpace) -> Iterator[tuple[str, str]]:
    """(hwnas key, their key) of the stem, every MBConv block and the last conv (v3 head)."""
    yield from _conv_bn("stem", "first_conv")
    n = 0
    for i, spec in enumerate(space.stages):
        for b in range(max(spec.depths)):
            ours, theirs = f"stages.{i}.{b}", f"blocks.{n}.mobile_inverted_conv"
            for part, their_part in _MBCONV:
                if part != "expand" or max(spec.expansions) > 1:
                    yield from _conv_bn(f"{ours}.{part}", f"{theirs}.{their_part}")
            if spec.se:
                for fc in ("reduce", "expand"):
                    for p in ("weight", "bias"):
                        yield f"{ours}.se.{fc}.{p}", f"{theirs}.depth_conv.se.fc.{fc}.{p}"
            if b == 0:  # later blocks' widths never differ: their shortcut convs never run
                yield f"{ours}.shortcut.weight", f"blocks.{n}.shortcut.conv.conv.weight"
            n += 1
    yield from _conv_bn("last", "last_conv.final_expand_layer")


def _head_keys(layout: str, task: str) -> Iterator[tuple[str, str]]:
    """(hwnas key, their key) of the head the checkpoint holds for `task` (none: initialised fresh)."""
    if layout == "salnas" and task != "classification":
        for j in range(5):
            yield from _conv_bn(f"head.{j}", f"decode_output{j}.0")
        for j in (5, 6):
            yield from _conv_bn(f"head.{j}", f"decode_output{j}")
    elif layout == "attentivenas" and task == "classification":
        yield "head.0.conv.weight", "last_conv.feature_mix_layer.conv.conv.weight"
        for p in ("weight", "bias"):
            yield f"head.1.linear.linear.{p}", f"classifier.linear.linear.{p}"


def _unused(key: str) -> bool:
    """Their tensors no forward pass reads: per-resolution BN trackers, shortcut convs of blocks
    whose widths never differ (hwnas keeps those of each stage's first block)."""
    return ".bn_tracking." in key or (key.startswith("blocks.") and key.endswith(".shortcut.conv.conv.weight"))


@dataclass(frozen=True)
class Conversion:
    """An authors' checkpoint as an hwnas supernet state dict, and what came from where."""

    state: dict[str, torch.Tensor]
    space: SearchSpace
    task: str
    num_classes: int
    loaded: int  # tensors taken from the checkpoint
    fresh: list[str]  # hwnas tensors initialised fresh (a head the checkpoint does not hold)
    dropped: int  # their tensors no forward pass reads


def default_space(task: str) -> str:
    """The preset a conversion writes when no --space is given."""
    return "alphanet-imagenet" if task == "classification" else "alphanet"


def convert(foreign: ForeignCheckpoint, space: SearchSpace, *, task: str, seed: int = 0) -> Conversion:
    """`foreign`'s weights on an hwnas `Supernet` of `space` for `task`; every mismatch (a block
    count, a shape, a key hwnas does not know) is one `CheckpointError` naming the tensor."""
    from hwnas.nn.factory import create

    path = foreign.path
    if foreign.layout == "salnas" and task == "classification":
        raise CheckpointError(f"checkpoint {path} is a SalNAS saliency supernet: it holds no classifier")
    blocks = sum(max(spec.depths) for spec in space.stages)
    if foreign.blocks != blocks:
        raise CheckpointError(
            f"checkpoint {path} has {foreign.blocks} MBConv blocks; space '{space.name}' has {blocks} "
            "(pass the space it was trained with as --space)"
        )
    num_classes = 1
    if task == "classification":
        num_classes = int(foreign.state["classifier.linear.linear.weight"].shape[0])
    target = create(space, task=task, num_classes=num_classes, seed=seed).state_dict()
    pairs = dict(_encoder_keys(space)) | dict(_head_keys(foreign.layout, task))
    theirs = set(foreign.state)
    missing = [t for t in pairs.values() if t not in theirs]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks '{missing[0]}' (and {len(missing) - 1} more) that space '{space.name}' "
            "needs: it was trained on another structure"
        )
    unknown = sorted(k for k in theirs - set(pairs.values()) if not _unused(k) and not _other_head(k, task))
    if unknown:
        raise CheckpointError(f"checkpoint {path} has '{unknown[0]}', which no layer of space '{space.name}' holds")
    state = dict(target)
    for ours, their_key in pairs.items():
        tensor = foreign.state[their_key]
        if their_key == _OVERSIZED and ours in target and tensor.shape[1] > target[ours].shape[1]:
            tensor = tensor[:, : target[ours].shape[1]]
        if ours not in target or tuple(tensor.shape) != tuple(target[ours].shape):
            expected = tuple(target[ours].shape) if ours in target else "nothing"
            raise CheckpointError(
                f"checkpoint {path}: '{their_key}' has shape {tuple(tensor.shape)}, space '{space.name}' expects "
                f"{expected} there (pass the space it was trained with as --space)"
            )
        state[ours] = tensor.detach().clone().to(target[ours].dtype)
    fresh = sorted(k for k in target if k not in pairs)
    dropped = len(theirs) - len(pairs)
    return Conversion(state, space, task, num_classes, len(pairs), fresh, dropped)


# SalNAS allocates its first decoder conv for `last_conv.c` (1984) input channels (`decode_channel[0]
# = ch_eml[8]` in `attentive_nas_dynamic_model.py`), but feeds it the final expand (6 x MBConv-7, at
# most 1344), so its dynamic layer only ever reads the leading columns: those come across.
_OVERSIZED = "decode_output0.0.conv.conv.weight"


def _other_head(key: str, task: str) -> bool:
    """Their head tensors a conversion to another task leaves behind (the ImageNet classifier of an
    AlphaNet supernet converted for saliency)."""
    return task != "classification" and key.startswith(("classifier.", "last_conv.feature_mix_layer."))


def arch_from_settings(space: SearchSpace, settings: Any) -> Arch:
    """An arch from their `get_active_subnet_settings()` dict (`resolution`, `width` of stem, each
    stage and last conv, and per stage `depth`, `kernel_size`, `expand_ratio`)."""
    keys = ("resolution", "width", "depth", "kernel_size", "expand_ratio")
    if not isinstance(settings, dict) or any(k not in settings for k in keys):
        raise ArchError(f"subnet settings must be an object with {', '.join(keys)}")
    n = len(space.stages)
    width, depth, kernel, expand = (settings[k] for k in keys[1:])
    if len(width) != n + 2 or not len(depth) == len(kernel) == len(expand) == n:
        raise ArchError(f"subnet settings for space '{space.name}' need {n + 2} widths and {n} depths, kernels, ratios")
    matches = [r for r in space.resolutions if r[0] == settings["resolution"]]
    if not matches:
        raise ArchError(f"resolution {settings['resolution']} is not a width of space '{space.name}''s resolutions")
    per_stage = zip(width[1:-1], depth, kernel, expand, strict=True)
    stages = tuple(StageArch(w, (k,) * d, (e,) * d) for w, d, k, e in per_stage)
    last = space.last_width(stages[-1].width, width[-1])
    mix = width[-1] if space.last.mix else None
    if space.last.expand is not None and not space.last.mix and width[-1] != last:
        raise ArchError(
            f"subnet settings give the last conv {width[-1]} channels; space '{space.name}' ties it to {last}"
        )
    return space.validate(Arch(matches[0], width[0], stages, last, mix))


def authors_params(space: SearchSpace, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
    """The parameter count the authors' code reports for `arch` (`sum(p.numel())` of their extracted
    subnet): hwnas's count plus the 1x1 conv their `ShortcutLayer` allocates in every block, also
    where the shortcut is the identity and the conv never runs (AttentiveNAS
    `models/modules/static_layers.py`)."""
    sigs = space.block_signatures(arch, task, num_classes)
    unused = sum(s.cin * s.cout for s in sigs if s.op == "mbconv" and not s.shortcut_conv)
    return space.params(arch, task, num_classes) + unused


@dataclass(frozen=True)
class Converted:
    """What `convert_checkpoint` wrote."""

    out: Path
    layout: str
    kind: str  # supernet or subnet
    conversion: Conversion
    arch: Arch | None


def convert_checkpoint(
    source: str | Path,
    out: str | Path,
    *,
    expect: str,
    task: str = "saliency",
    space: str | Path | None = None,
    arch: str | None = None,
) -> Converted:
    """`hwnas convert`: the authors' checkpoint at `source` (`expect`: "alphanet" for an AlphaNet /
    AttentiveNAS ImageNet supernet, "salnas" for a SalNAS saliency supernet) as an hwnas
    checkpoint at `out` — a supernet, or with `arch` the subnet of that arch with the stored weights
    and BN statistics as they are. Everything is checked before `out` is written."""
    from hwnas.data.split import IMAGENET_MEAN, IMAGENET_STD
    from hwnas.files import writable_file
    from hwnas.nn.checkpoint import save_checkpoint
    from hwnas.nn.factory import create

    if task not in ("saliency", "classification"):
        raise HwnasError(f"--task must be saliency or classification, got '{task}'")
    writable_file(out, what="--out")
    foreign = read_foreign(source)
    wanted = "attentivenas" if expect == "alphanet" else "salnas"
    if foreign.layout != wanted:
        verb = "salnas" if foreign.layout == "salnas" else "alphanet"
        raise CheckpointError(f"checkpoint {source} is a {foreign.layout} checkpoint; use `hwnas convert {verb}`")
    sp = SearchSpace.load(space or default_space(task))
    conversion = convert(foreign, sp, task=task)
    chosen = None if arch is None else pick_arch(sp, arch)
    model = create(sp, task=task, num_classes=conversion.num_classes)
    model.load_state_dict(conversion.state)
    state = model.extract(chosen).state_dict() if chosen is not None else conversion.state
    payload = {
        "kind": "supernet" if chosen is None else "subnet",
        "task": task,
        "num_classes": conversion.num_classes,
        "space_toml": sp.toml,
        "space_digest": sp.digest(),
        "arch": None if chosen is None else sp.arch_to_dict(chosen),
        "data": None,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},  # theirs: ImageNet's
        "converted_from": {"layout": foreign.layout, "file": str(source), "fresh": conversion.fresh},
        "config": {},
        "epoch": 0,
        "history": [],
        "model": state,
    }
    save_checkpoint(out, payload)
    return Converted(Path(out), foreign.layout, payload["kind"], conversion, chosen)


def pick_arch(space: SearchSpace, choice: str) -> Arch:
    """--arch of `hwnas convert`: what `SearchSpace.pick` reads, or a JSON file of the authors'
    subnet settings (`get_active_subnet_settings()`, e.g. a searched SalNAS subnet)."""
    from hwnas.files import read_json

    if choice.endswith(".json") and Path(choice).is_file():
        data = read_json(choice, what="arch file", error=ArchError)
        if isinstance(data, dict) and "width" in data:
            return arch_from_settings(space, data)
    return space.pick(choice)
