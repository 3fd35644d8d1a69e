"""`SearchSpace`: the choices of a weight-sharing supernet, as named variables with an integer codec.

A space is built from its TOML spec (`hwnas.space.spec`: presets in `hwnas/space/presets/`, or a
user's file). Each choice is a variable (`variables`, in `encode()` order), so an `Arch`
(`hwnas.space.arch`) is also an integer vector with per-variable bounds for searchers
(`encode` / `decode`, round-tripping exactly). `validate` says whether an arch belongs to the
space; the arch's JSON and line forms are read through it (`arch_from_dict`, `parse`, `load_arch`,
`pick`). What a subnet's blocks are, and so its params and FLOPs, is `hwnas.space.signatures`,
reached through the methods of the same names.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import ArchError
from hwnas.files import read_json
from hwnas.space import signatures
from hwnas.space.arch import Arch, StageArch
from hwnas.space.signature import BlockSignature
from hwnas.space.spec import RESIDUAL, LastSpec, StageSpec, StemSpec, presets, read_spec, spec_text

DEFAULT_SPACE = "alphanet"


def one_hot(space: Any, x: np.ndarray) -> np.ndarray:
    """One indicator per choice of each of `space.variables`, for rows of encoded archs."""
    x = np.asarray(x, dtype=np.int64).reshape(-1, len(space.variables))
    sizes = [len(choices) for _, choices in space.variables]
    out = np.zeros((len(x), sum(sizes)), dtype=np.float32)
    offset = 0
    for i, size in enumerate(sizes):
        out[np.arange(len(x)), offset + x[:, i]] = 1.0
        offset += size
    return out


class SearchSpace:
    """The choices of a supernet. Build with `SearchSpace.load("alphanet")` or from a TOML path."""

    def __init__(
        self,
        *,
        name: str,
        resolutions: tuple[tuple[int, int], ...],
        stem: StemSpec,
        stages: tuple[StageSpec, ...],
        last: LastSpec,
        decoder_act: str,
        choices: str = "block",
        block: str = "mbconv",
        description: str = "",
    ):
        self.name = name
        self.choices = choices
        self.block = block  # the stages' layer: mbconv, or a residual one (bottleneck, basic)
        self.description = description
        self.resolutions = resolutions
        self.stem = stem
        self.stages = stages
        self.last = last
        self.decoder_act = decoder_act
        self.toml: str | None = None  # the TOML text it was read from, which checkpoints embed
        self._variables = self._build_variables()
        self._gene_index = {name: i for i, (name, _) in enumerate(self._variables)}
        per_block = choices == "block"
        self._depth_genes = [
            (
                self.gene(f"stages[{i}].depth"),
                st.depths,
                [list(self.block_genes(i, b)) for b in range(max(st.depths))] if per_block else [],
            )
            for i, st in enumerate(self.stages)
        ]

    @property
    def residual(self) -> bool:
        """Whether the stages are residual layers (MoSegNAS's space): no last conv, BiSeNet's heads."""
        return self.block in RESIDUAL

    # ---- loading ------------------------------------------------------------------------
    @staticmethod
    def presets() -> list[str]:
        return presets()

    @classmethod
    def load(cls, name_or_path: str | Path) -> SearchSpace:
        """A preset by name (`alphanet`, `mini`) or a TOML file by path."""
        text, source = spec_text(name_or_path)
        return cls.from_toml(text, source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<toml>") -> SearchSpace:
        space = cls(**read_spec(text, source=source))
        space.toml = text
        return space

    # ---- variables and encoding ---------------------------------------------------------
    def _build_variables(self) -> list[tuple[str, tuple]]:
        variables: list[tuple[str, tuple]] = [
            ("resolution", tuple(self.resolutions)),
            ("stem.width", self.stem.widths),
        ]
        if self.stem.kernels:
            variables.append(("stem.kernel", self.stem.kernels))
        for i, st in enumerate(self.stages):  # named as the arch JSON's paths, counted from 0
            variables += [(f"stages[{i}].width", st.widths), (f"stages[{i}].depth", st.depths)]
            if self.residual:  # MoSegNAS: each layer's intermediate width
                variables += [(f"stages[{i}].mids[{b}]", st.expansions) for b in range(max(st.depths))]
                continue
            if self.choices == "stage":
                variables += [(f"stages[{i}].kernel", st.kernels), (f"stages[{i}].expansion", st.expansions)]
                continue
            for b in range(max(st.depths)):
                variables += [
                    (f"stages[{i}].kernels[{b}]", st.kernels),
                    (f"stages[{i}].expansions[{b}]", st.expansions),
                ]
        if self.last.expand is None:
            variables.append(("last_conv.width", self.last.widths))
        if self.last.mix:
            variables.append(("last_conv.mix", self.last.mix))
        return variables

    def block_genes(self, stage: int, block: int) -> tuple[int, ...]:
        """The genes of a block: (kernel, expansion), its stage's in a per-stage space; (mid,) in a
        residual space."""
        if self.residual:
            return (self.gene(f"stages[{stage}].mids[{block}]"),)
        if self.choices == "stage":
            return self.gene(f"stages[{stage}].kernel"), self.gene(f"stages[{stage}].expansion")
        return self.gene(f"stages[{stage}].kernels[{block}]"), self.gene(f"stages[{stage}].expansions[{block}]")

    def last_width(self, stage_width: int, last: int | None = None) -> int:
        """The last conv's width: `expand` x the last stage's width when tied, else `last`."""
        return self.last.expand * stage_width if self.last.expand is not None else int(last)

    @property
    def variables(self) -> list[tuple[str, tuple]]:
        """(name, choices) of every encoded variable, in `encode()` order."""
        return list(self._variables)

    @property
    def n_var(self) -> int:
        return len(self._variables)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds (xl, xu) of the encoding, for pymoo."""
        xu = np.array([len(c) - 1 for _, c in self._variables], dtype=np.int64)
        return np.zeros_like(xu), xu

    def encode(self, arch: Arch) -> np.ndarray:
        """Integer vector of choice indices; blocks beyond a stage's depth encode as 0."""
        self.validate(arch)
        out = [self.resolutions.index(tuple(arch.resolution)), self.stem.widths.index(arch.stem)]
        if self.stem.kernels:
            out.append(self.stem.kernels.index(arch.stem_kernel))
        for spec, st in zip(self.stages, arch.stages, strict=True):
            out += [spec.widths.index(st.width), spec.depths.index(st.depth)]
            if self.residual:
                out += [spec.expansions.index(e) for e in st.expansions] + [0] * (max(spec.depths) - st.depth)
                continue
            if self.choices == "stage":
                out += [spec.kernels.index(st.kernels[0]), spec.expansions.index(st.expansions[0])]
                continue
            for b in range(max(spec.depths)):
                if b < st.depth:
                    out += [spec.kernels.index(st.kernels[b]), spec.expansions.index(st.expansions[b])]
                else:
                    out += [0, 0]
        if self.last.expand is None:
            out.append(self.last.widths.index(arch.last))
        if self.last.mix:
            out.append(self.last.mix.index(arch.mix))
        return np.asarray(out, dtype=np.int64)

    def features(self, x: np.ndarray) -> np.ndarray:
        """What predictors learn from: one indicator per choice of each variable (MoSegNAS's
        sparse encoding, Section III-C)."""
        return one_hot(self, x)

    def depth_genes(self) -> list[tuple[int, tuple[int, ...]]]:
        """(depth gene, depth choices) of each stage, for NATv2's depth-uniform sampling."""
        return [(self.gene(f"stages[{i}].depth"), st.depths) for i, st in enumerate(self.stages)]

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Encodings (one row or many) with the genes of blocks past each stage's depth set to 0, as
        `encode()` writes them: two vectors of one arch become the same vector, so what a predictor
        is trained on (`encode`) and asked about (a searcher's offspring) are the same vectors."""
        x = np.array(x, dtype=np.int64)
        rows = x.reshape(-1, self.n_var)
        for depth_gene, depths, blocks in self._depth_genes:
            depth = np.asarray(depths)[rows[:, depth_gene]]
            for b, genes in enumerate(blocks):
                rows[np.ix_(depth <= b, genes)] = 0
        return rows.reshape(x.shape)

    def decode(self, x: np.ndarray | list[int]) -> Arch:
        """The arch of an integer vector; raises `ArchError` for a wrong length or out-of-bounds gene."""
        x = np.asarray(x)
        if x.shape != (self.n_var,):
            raise ArchError(f"an encoded arch of space '{self.name}' has {self.n_var} integers, got shape {x.shape}")
        values = []
        for gene, (name, choices) in zip(x.tolist(), self._variables, strict=True):
            if int(gene) != gene or not 0 <= gene < len(choices):
                raise ArchError(f"encoded {name} = {gene} is outside 0..{len(choices) - 1}")
            values.append(choices[int(gene)])
        it = iter(values)
        resolution, stem = next(it), next(it)
        stem_kernel = next(it) if self.stem.kernels else None
        stages = []
        for spec in self.stages:
            width, depth = next(it), next(it)
            if self.residual:
                genes = [(3, next(it)) for _ in range(max(spec.depths))][:depth]
            elif self.choices == "stage":
                genes = [(next(it), next(it))] * depth
            else:
                genes = [(next(it), next(it)) for _ in range(max(spec.depths))][:depth]
            stages.append(StageArch(width, tuple(k for k, _ in genes), tuple(e for _, e in genes)))
        last = self.last_width(stages[-1].width, None if self.last.expand is not None else next(it))
        mix = next(it) if self.last.mix else None
        return Arch(tuple(resolution), stem, tuple(stages), last, mix, stem_kernel)

    # ---- sampling ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """Uniform over each variable (so uniform over depth per stage, not over subnets)."""
        _, xu = self.bounds()
        return self.decode(rng.integers(0, xu + 1))

    def min(self) -> Arch:
        return self.decode(self.bounds()[0])

    def max(self) -> Arch:
        return self.decode(self.bounds()[1])

    def size(self) -> int:
        """Number of distinct subnets (blocks beyond a stage's depth do not count)."""
        total = len(self.resolutions) * len(self.stem.widths) * max(1, len(self.stem.kernels))
        total *= max(1, len(self.last.widths)) * max(1, len(self.last.mix))
        for st in self.stages:
            per_block = len(st.kernels) * len(st.expansions)
            if self.choices == "stage":
                total *= len(st.widths) * len(st.depths) * per_block
            else:
                total *= len(st.widths) * sum(per_block**d for d in st.depths)
        return total

    # ---- validation and serialisation -----------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return `arch` if it belongs to this space, else raise `ArchError` naming the field."""

        def check(name: str, value: Any, allowed: tuple) -> None:
            if value not in allowed:
                raise ArchError(f"arch {name} = {value!r} is not in space '{self.name}'; allowed: {list(allowed)}")

        check("resolution", tuple(arch.resolution), self.resolutions)
        check("stem", arch.stem, self.stem.widths)
        if self.stem.kernels:
            check("stem_kernel", arch.stem_kernel, self.stem.kernels)
        elif arch.stem_kernel is not None:
            raise ArchError(f"arch has a stem kernel (stem_kernel = {arch.stem_kernel}); space '{self.name}' has none")
        if len(arch.stages) != len(self.stages):
            raise ArchError(f"arch has {len(arch.stages)} stages; space '{self.name}' has {len(self.stages)}")
        for i, (spec, st) in enumerate(zip(self.stages, arch.stages, strict=True)):
            check(f"stages[{i}].width", st.width, spec.widths)
            check(f"stages[{i}].depth", st.depth, spec.depths)
            if len(st.expansions) != st.depth:
                raise ArchError(f"arch stages[{i}] has {st.depth} kernels but {len(st.expansions)} expansions")
            for b, (k, e) in enumerate(zip(st.kernels, st.expansions, strict=True)):
                check(f"stages[{i}].kernels[{b}]", k, spec.kernels)
                check(f"stages[{i}].expansions[{b}]", e, spec.expansions)
            if self.choices == "stage" and (len(set(st.kernels)) > 1 or len(set(st.expansions)) > 1):
                raise ArchError(
                    f"arch stages[{i}] mixes kernels {list(st.kernels)} / expansions {list(st.expansions)}; space "
                    f"'{self.name}' chooses one kernel and one expansion per stage"
                )
        if self.last.expand is not None:
            tied = self.last_width(arch.stages[-1].width)
            if arch.last != tied:
                what = "has no last conv: last is" if self.residual else f"ties the last conv to {self.last.expand} x"
                raise ArchError(
                    f"arch last = {arch.last} but space '{self.name}' {what} the last stage's width ({tied})"
                )
        else:
            check("last", arch.last, self.last.widths)
        if self.last.mix:
            check("mix", arch.mix, self.last.mix)
        elif arch.mix is not None:
            raise ArchError(f"arch has a feature-mix width (mix = {arch.mix}); space '{self.name}' has none")
        return arch

    def arch_to_dict(self, arch: Arch) -> dict[str, Any]:
        return {"space": self.name, **self.validate(arch).to_dict()}

    def arch_from_dict(self, data: Any) -> Arch:
        """Build and validate an arch from its JSON form; a `space` key must name this space."""
        if isinstance(data, dict) and data.get("space", self.name) != self.name:
            raise ArchError(f"arch is for space '{data['space']}', not '{self.name}'")
        return self.validate(Arch.from_dict(data))

    def pick(self, choice: str, seed: int = 0) -> Arch:
        """The arch a user names: min, max, random (with `seed`), an arch .json file or a one-line string."""
        if choice == "min":
            return self.min()
        if choice == "max":
            return self.max()
        if choice == "random":
            return self.sample(np.random.default_rng(seed))
        if choice.endswith(".json") or Path(choice).exists():
            return self.load_arch(choice)
        if "|" in choice:
            return self.parse(choice)
        raise ArchError(f"unknown arch '{choice}'; use min, max, random, a path to an arch .json file or an arch line")

    def load_arch(self, path: str | Path) -> Arch:
        return self.arch_from_dict(read_json(path, what="arch file", error=ArchError))

    def parse(self, text: str) -> Arch:
        """Inverse of `str(arch)`."""
        return self.validate(Arch.parse(text, example=str(self.min())))

    def gene(self, name: str) -> int:
        """Index of a named variable in the encoding (see `variables`)."""
        return self._gene_index[name]

    def check_resolution(self, resolution: tuple[int, int]) -> tuple[int, int]:
        """`resolution` (width, height) if the space offers it, else an `ArchError` listing those it does."""
        r = tuple(resolution)
        if r not in self.resolutions:
            allowed = ", ".join(f"{w}x{h}" for w, h in self.resolutions)
            raise ArchError(f"resolution {r[0]}x{r[1]} is not in space '{self.name}'; allowed: {allowed}")
        return r

    # ---- the blocks of an arch (hwnas.space.signatures) -----------------------------------
    def slots(self, task: str = "saliency") -> list[signatures.Slot]:
        return signatures.slots(self, task)

    def slot_signatures(
        self, slot: signatures.Slot, task: str = "saliency", num_classes: int | None = None
    ) -> dict[tuple, BlockSignature]:
        return signatures.slot_signatures(self, slot, task, num_classes)

    def all_block_signatures(
        self, resolutions: list[tuple[int, int]] | None = None, task: str = "saliency", num_classes: int | None = None
    ) -> list[BlockSignature]:
        return signatures.all_block_signatures(self, resolutions, task, num_classes)

    def block_signatures(
        self, arch: Arch, task: str = "saliency", num_classes: int | None = None
    ) -> list[BlockSignature]:
        return signatures.block_signatures(self, arch, task, num_classes)

    def skip_sources(self) -> list[int]:
        return signatures.skip_sources(self)

    def up_sources(self) -> list[int]:
        return signatures.up_sources(self)

    def sod_levels(self, features: list, bottleneck: BlockSignature) -> list[tuple[int, int, int]]:
        return signatures.sod_levels(self, features, bottleneck)

    def params(self, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
        """Analytic trainable parameters of the extracted subnet."""
        return signatures.params(self, arch, task, num_classes)

    def flops(self, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
        """Analytic FLOPs per image (2 x MACs), as `torch.utils.flop_counter` counts them."""
        return signatures.flops(self, arch, task, num_classes)

    def digest(self) -> str:
        """A short hash of the choices (not the name): tables and checkpoints record it."""
        spec = {
            "variables": [[n, [list(c) if isinstance(c, tuple) else c for c in ch]] for n, ch in self._variables],
            "stem": [self.stem.kernel, self.stem.stride, self.stem.act],
            "last_act": self.last.act,
            "last_expand": self.last.expand,
            "choices": self.choices,
            "stages": [[s.se, s.stride, s.act] for s in self.stages],
            "decoder": self.decoder_act,
        }
        if self.residual:  # only here, so the digests of the MBConv spaces stay what their tables hold
            spec |= {"block": self.block, "stem_kernels": list(self.stem.kernels), "pool": self.stem.pool}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SearchSpace(name={self.name!r}, n_var={self.n_var}, size~1e{math.log10(self.size()):.1f})"
