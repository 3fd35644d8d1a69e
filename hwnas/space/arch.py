"""`Arch`: one subnet of a SalNAS-style space, and its two text forms.

An `Arch` is a frozen, hashable value. Its JSON form (`to_dict` / `Arch.from_dict`) and its readable
line (`str(arch)` / `Arch.parse`) round-trip exactly. These check the form only; whether an arch
belongs to a space is the space's check (`SearchSpace.validate`, which `SearchSpace.arch_from_dict`,
`parse`, `load_arch` and `pick` apply). The third form, an integer vector for searchers, is the
space's encoding (`SearchSpace.encode` / `decode`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hwnas.errors import ArchError

FIELDS = {"space", "resolution", "stem", "stem_kernel", "stages", "last", "mix", "search"}
# "search": what `hwnas search` wrote beside the arch it chose (budgets, predicted costs, tables);
# read by `search_context`, not part of the arch
STAGE_FORM = r"w(\d+)((?: k\d+e\d+)+)"


@dataclass(frozen=True)
class StageArch:
    """One stage of a subnet: its output width and, per active block, kernel and expansion (in a
    residual space, kernel 3 and the layer's intermediate width in channels)."""

    width: int
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.kernels)


@dataclass(frozen=True)
class Arch:
    """One subnet. `resolution` is (width, height) of the input image, as in `256x192`.

    `stem_kernel` is set in a residual space (MoSegNAS's, `hwnas.space.spec`), where the stem's kernel
    is chosen and `last` is the last stage's width (there is no last conv); its line writes the stem
    as `s64k7` and each layer by its intermediate width, `m64`.
    """

    resolution: tuple[int, int]
    stem: int
    stages: tuple[StageArch, ...]
    last: int
    mix: int | None = None  # AlphaNet's classifier feature-mix width (spaces with `last_conv.mix`)
    stem_kernel: int | None = None

    @property
    def residual(self) -> bool:
        return self.stem_kernel is not None

    def to_dict(self) -> dict[str, Any]:
        mix = {} if self.mix is None else {"mix": self.mix}
        kernel = {} if self.stem_kernel is None else {"stem_kernel": self.stem_kernel}
        return {
            "resolution": list(self.resolution),
            "stem": self.stem,
            **kernel,
            "stages": [
                {
                    "width": s.width,
                    "depth": s.depth,
                    "kernels": list(s.kernels),
                    "expansions": list(s.expansions),
                }
                for s in self.stages
            ],
            "last": self.last,
            **mix,
        }

    def __str__(self) -> str:
        """Readable one-line form, e.g. `256x192 s16 | w16 k3e1 | w24 k3e4 k5e6 k3e4 | ... | l1296`."""
        w, h = self.resolution
        parts = [f"{w}x{h} s{self.stem}" + ("" if self.stem_kernel is None else f"k{self.stem_kernel}")]
        for s in self.stages:
            if self.residual:
                blocks = " ".join(f"m{e}" for e in s.expansions)
            else:
                blocks = " ".join(f"k{k}e{e}" for k, e in zip(s.kernels, s.expansions, strict=True))
            parts.append(f"w{s.width} {blocks}")
        parts.append(f"l{self.last}" + ("" if self.mix is None else f" m{self.mix}"))
        return " | ".join(parts)

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        """The arch of a JSON object (a `space` key is allowed and ignored here); a malformed one is
        one `ArchError` naming the field."""
        if not isinstance(data, dict):
            raise ArchError(f"an arch must be a JSON object, got {type(data).__name__}")
        if set(data) - FIELDS:
            raise ArchError(f"unknown arch field(s) {sorted(set(data) - FIELDS)}; allowed: {sorted(FIELDS)}")
        for key in ("resolution", "stem", "stages", "last"):
            if key not in data:
                raise ArchError(f"arch is missing field '{key}'")
        res = data["resolution"]
        if not (isinstance(res, list) and len(res) == 2 and all(_is_int(v) for v in res)):
            raise ArchError(f"arch resolution must be [width, height], got {res!r}")
        if not all(_is_int(data.get(k, 0)) for k in ("stem", "last", "mix", "stem_kernel")):
            raise ArchError("arch fields 'stem', 'stem_kernel', 'last' and 'mix' must be integers")
        if not isinstance(data["stages"], list):
            raise ArchError("arch field 'stages' must be a list")
        stages = tuple(_stage_from_dict(s, i) for i, s in enumerate(data["stages"]))
        return cls((res[0], res[1]), data["stem"], stages, data["last"], data.get("mix"), data.get("stem_kernel"))

    @classmethod
    def parse(cls, text: str, *, example: str) -> Arch:
        """Inverse of `str(arch)`; an unreadable line is an `ArchError` showing `example`."""
        parts = [p.strip() for p in text.strip().split("|")]
        head = re.fullmatch(r"(\d+)x(\d+) s(\d+)(?:k(\d+))?", parts[0]) if parts else None
        tail = re.fullmatch(r"l(\d+)(?: m(\d+))?", parts[-1]) if len(parts) > 1 else None
        if head is None or tail is None:
            raise ArchError(f"cannot read arch string {text!r}; expected like '{example}'")
        stages = []
        residual = head.group(4) is not None
        stage_form, stage_example = (r"w(\d+)((?: m\d+)+)", "w64 m64") if residual else (STAGE_FORM, "w24 k3e4 k5e6")
        for part in parts[1:-1]:
            m = re.fullmatch(stage_form, part)
            if m is None:
                raise ArchError(f"cannot read stage {part!r}; expected like '{stage_example}'")
            if residual:  # a residual layer's 3x3 and its intermediate width
                blocks = [("3", mid) for mid in re.findall(r"m(\d+)", m.group(2))]
            else:
                blocks = re.findall(r"k(\d+)e(\d+)", m.group(2))
            stages.append(
                StageArch(int(m.group(1)), tuple(int(k) for k, _ in blocks), tuple(int(e) for _, e in blocks))
            )
        mix = None if tail.group(2) is None else int(tail.group(2))
        res = (int(head.group(1)), int(head.group(2)))
        kernel = int(head.group(4)) if residual else None
        return cls(res, int(head.group(3)), tuple(stages), int(tail.group(1)), mix, kernel)


def parse_resolution(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`"256x192"` (width x height, as a user types it) or a (width, height) pair -> (width, height);
    anything else is one `ArchError` showing the form."""
    if isinstance(value, tuple | list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    parts = str(value).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ArchError(f"--resolution must look like 256x192 (width x height), got '{value}'")
    return (int(parts[0]), int(parts[1]))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stage_from_dict(data: Any, index: int) -> StageArch:
    if not isinstance(data, dict):
        raise ArchError(f"arch stages[{index}] must be an object with width, kernels, expansions")
    for key in ("width", "kernels", "expansions"):
        if key not in data:
            raise ArchError(f"arch stages[{index}] is missing field '{key}'")
    kernels, expansions = data["kernels"], data["expansions"]
    if not _is_int(data["width"]) or not all(
        isinstance(v, list) and all(_is_int(x) for x in v) for v in (kernels, expansions)
    ):
        raise ArchError(f"arch stages[{index}]: width must be an integer, kernels and expansions lists of integers")
    if len(kernels) != len(expansions):
        raise ArchError(f"arch stages[{index}] has {len(kernels)} kernels but {len(expansions)} expansions")
    if "depth" in data and data["depth"] != len(kernels):
        raise ArchError(f"arch stages[{index}].depth = {data['depth']!r} but it lists {len(kernels)} blocks")
    return StageArch(data["width"], tuple(kernels), tuple(expansions))


def search_context(data: Any) -> dict[str, Any] | None:
    """The `search` object `hwnas search` writes into best.json beside the arch (its budgets, each
    device's latency limit in ms, the predicted costs, the tables), or None for an arch without one."""
    context = data.get("search") if isinstance(data, dict) else None
    if context is not None and not isinstance(context, dict):
        raise ArchError("the arch's 'search' field must be a JSON object (as `hwnas search` writes it)")
    return context
