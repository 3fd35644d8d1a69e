"""`SearchSpace` and `Arch`: the choices of a weight-sharing supernet and one subnet of it.

The space follows SalNAS (Termritthikun et al.), Section 3.1.2 and Table 1: a stem convolution,
seven MBConv stages and a last 1x1 convolution, with resolution chosen globally, width and depth
per stage, and kernel and expansion per stage (`choices = "stage"`, as the authors' sampler
`sample_active_subnet` draws them) or per block (`choices = "block"`). The last convolution is
AlphaNet's "v3 head" final expand, `expand` x the last stage's width (`last_conv.expand`), or a
free width choice (`last_conv.widths`); `last_conv.mix` adds AlphaNet's classifier feature-mix
widths. Presets live in `hwnas/spaces/*.toml`.

An `Arch` is a frozen, hashable value. It has three forms that round-trip exactly:
JSON (`to_dict`/`SearchSpace.arch_from_dict`), a readable line (`str(arch)`/`SearchSpace.parse`)
and an integer vector with per-variable bounds for searchers (`encode`/`decode`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.config import check_name, load_toml
from hwnas.errors import ArchError, SpaceError
from hwnas.head import (
    BLUR_KERNEL,
    SodHead,
    blurs,
    check_task,
    default_classes,
    frm_signature,
    is_segmentation,
    is_sod,
    sod_signatures,
)
from hwnas.io import read_json
from hwnas.signature import ACTIVATIONS, BlockSignature, spatial_after

_ENCODER_ACTS = tuple(a for a in ACTIVATIONS if a != "sigmoid")


# --------------------------------------------------------------------------------------------
# Arch
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageArch:
    """One stage of a subnet: its output width and, per active block, kernel and expansion."""

    width: int
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.kernels)


@dataclass(frozen=True)
class Arch:
    """One subnet. `resolution` is (width, height) of the input image, as in `256x192`."""

    resolution: tuple[int, int]
    stem: int
    stages: tuple[StageArch, ...]
    last: int
    mix: int | None = None  # AlphaNet's classifier feature-mix width (spaces with `last_conv.mix`)

    def to_dict(self) -> dict[str, Any]:
        mix = {} if self.mix is None else {"mix": self.mix}
        return {
            "resolution": list(self.resolution),
            "stem": self.stem,
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
        parts = [f"{w}x{h} s{self.stem}"]
        for s in self.stages:
            blocks = " ".join(f"k{k}e{e}" for k, e in zip(s.kernels, s.expansions, strict=True))
            parts.append(f"w{s.width} {blocks}")
        parts.append(f"l{self.last}" + ("" if self.mix is None else f" m{self.mix}"))
        return " | ".join(parts)


@dataclass(frozen=True)
class Slot:
    """A block position and the encoding genes that decide its signature (see `SearchSpace.slots`)."""

    position: int
    genes: tuple[int, ...]
    depth_gene: int | None = None
    min_depth: int = 1


# --------------------------------------------------------------------------------------------
# Space specification (validated TOML)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StemSpec:
    widths: tuple[int, ...]
    kernel: int
    stride: int
    act: str


@dataclass(frozen=True)
class StageSpec:
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]
    se: bool
    stride: int
    act: str


@dataclass(frozen=True)
class LastSpec:
    """The last conv: a free width (`widths`) or `expand` x the last stage's width (AlphaNet's v3
    head, `final_expand_layer`); `mix`: widths of the classifier's feature-mix layer, if any."""

    widths: tuple[int, ...]
    act: str
    expand: int | None = None
    mix: tuple[int, ...] = ()


class _Fields:
    """Reads typed fields from one TOML table and names the field in every error."""

    def __init__(self, table: Any, where: str, source: str):
        if not isinstance(table, dict):
            raise SpaceError(f"{source}: [{where}] must be a table, got {type(table).__name__}")
        self.table, self.where, self.source = table, where, source

    def _fail(self, name: str, expected: str) -> SpaceError:
        got = self.table.get(name)
        return SpaceError(f"{self.source}: field '{self.where}.{name}' must be {expected}, got {got!r}")

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self.table:
            if default is None:
                raise SpaceError(f"{self.source}: missing field '{self.where}.{name}'")
            return default
        return self.table[name]

    def int(self, name: str, default: int | None = None) -> int:
        value = self.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self._fail(name, "a positive integer")
        return value

    def ints(self, name: str, default: list[int] | None = None) -> tuple[int, ...]:
        value = self.get(name, default)
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        )
        if not ok or len(set(value)) != len(value):
            raise self._fail(name, "a non-empty list of distinct positive integers")
        return tuple(sorted(value))

    def bool(self, name: str, default: bool | None = None) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.get(name, default)
        if value not in allowed:
            raise self._fail(name, f"one of {list(allowed)}")
        return value


def _parse_resolutions(value: Any, source: str) -> tuple[tuple[int, int], ...]:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and v >= 8 for v in r) for r in value)
    )
    if not ok:
        raise SpaceError(
            f"{source}: field 'resolutions' must be a list of [width, height] pairs of integers >= 8, got {value!r}"
        )
    return tuple(sorted({(r[0], r[1]) for r in value}, key=lambda r: (r[0] * r[1], r)))


_KNOWN_TOP = {"name", "description", "resolutions", "choices", "stem", "stages", "last_conv", "decoder", "notes"}
CHOICES = ("stage", "block")


# --------------------------------------------------------------------------------------------
# SearchSpace
# --------------------------------------------------------------------------------------------
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
        description: str = "",
    ):
        self.name = name
        self.choices = choices
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

    # ---- loading ------------------------------------------------------------------------
    @staticmethod
    def presets() -> list[str]:
        folder = resources.files("hwnas") / "spaces"
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))

    @classmethod
    def load(cls, name_or_path: str | Path) -> SearchSpace:
        """A preset by name (`alphanet`, `mini`) or a TOML file by path."""
        text_name = str(name_or_path)
        if text_name in cls.presets():
            text = (resources.files("hwnas") / "spaces" / f"{text_name}.toml").read_text()
            return cls.from_toml(text, source=f"preset '{text_name}'")
        path = Path(text_name)
        if path.suffix == ".toml" or path.exists():
            if not path.is_file():
                raise SpaceError(f"search-space file {path} does not exist")
            return cls.from_toml(path.read_text(encoding="utf-8"), source=str(path))
        raise SpaceError(
            f"unknown search space '{text_name}'; presets: {', '.join(cls.presets())}, or give the path of a .toml file"
        )

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<toml>") -> SearchSpace:
        data = load_toml(text, source=source, allowed=_KNOWN_TOP, error=SpaceError)
        top = _Fields(data, "space", source)
        name = check_name(data.get("name"), source=source, error=SpaceError)
        stem_f = _Fields(top.get("stem"), "stem", source)
        stem = StemSpec(
            widths=stem_f.ints("widths"),
            kernel=stem_f.int("kernel", 3),
            stride=stem_f.int("stride", 2),
            act=stem_f.choice("act", _ENCODER_ACTS, "swish"),
        )
        raw_stages = top.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise SpaceError(f"{source}: field 'stages' must be a non-empty array of tables")
        stages = tuple(cls._parse_stage(raw, i, source) for i, raw in enumerate(raw_stages))
        last = cls._parse_last(_Fields(top.get("last_conv"), "last_conv", source))
        dec_f = _Fields(data.get("decoder", {}), "decoder", source)
        space = cls(
            name=name,
            description=str(data.get("description", "")),
            resolutions=_parse_resolutions(top.get("resolutions"), source),
            stem=stem,
            stages=stages,
            last=last,
            decoder_act=dec_f.choice("act", _ENCODER_ACTS, "swish"),
            choices=top.choice("choices", CHOICES, "block"),
        )
        space.toml = text
        return space

    @staticmethod
    def _parse_last(f: _Fields) -> LastSpec:
        act = f.choice("act", _ENCODER_ACTS, "swish")
        mix = f.ints("mix") if "mix" in f.table else ()
        if ("widths" in f.table) == ("expand" in f.table):
            raise SpaceError(
                f"{f.source}: [last_conv] needs exactly one of 'widths' (a free choice) or 'expand' "
                "(the width is expand x the last stage's, AlphaNet's v3 head)"
            )
        if "expand" in f.table:
            return LastSpec(widths=(), act=act, expand=f.int("expand"), mix=mix)
        return LastSpec(widths=f.ints("widths"), act=act, mix=mix)

    @staticmethod
    def _parse_stage(raw: Any, index: int, source: str) -> StageSpec:
        f = _Fields(raw, f"stages[{index}]", source)
        kernels = f.ints("kernels")
        if any(k % 2 == 0 for k in kernels):
            raise f._fail("kernels", "a list of odd kernel sizes")
        stride = f.int("stride")
        if stride not in (1, 2):
            raise f._fail("stride", "1 or 2")
        return StageSpec(
            widths=f.ints("widths"),
            depths=f.ints("depths"),
            kernels=kernels,
            expansions=f.ints("expansions"),
            se=f.bool("se"),
            stride=stride,
            act=f.choice("act", _ENCODER_ACTS, "swish"),
        )

    # ---- variables and encoding ---------------------------------------------------------
    def _build_variables(self) -> list[tuple[str, tuple]]:
        variables: list[tuple[str, tuple]] = [
            ("resolution", tuple(self.resolutions)),
            ("stem.width", self.stem.widths),
        ]
        for i, st in enumerate(self.stages):  # named as the arch JSON's paths, counted from 0
            variables += [(f"stages[{i}].width", st.widths), (f"stages[{i}].depth", st.depths)]
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

    def block_genes(self, stage: int, block: int) -> tuple[int, int]:
        """(kernel gene, expansion gene) of a block: its stage's in a per-stage space."""
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
        for spec, st in zip(self.stages, arch.stages, strict=True):
            out += [spec.widths.index(st.width), spec.depths.index(st.depth)]
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
        stages = []
        for spec in self.stages:
            width, depth = next(it), next(it)
            if self.choices == "stage":
                genes = [(next(it), next(it))] * depth
            else:
                genes = [(next(it), next(it)) for _ in range(max(spec.depths))][:depth]
            stages.append(StageArch(width, tuple(k for k, _ in genes), tuple(e for _, e in genes)))
        last = self.last_width(stages[-1].width, None if self.last.expand is not None else next(it))
        mix = next(it) if self.last.mix else None
        return Arch(tuple(resolution), stem, tuple(stages), last, mix)

    # ---- sampling and variation -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """Uniform over each variable (so uniform over depth per stage, not over subnets)."""
        _, xu = self.bounds()
        return self.decode(rng.integers(0, xu + 1))

    def min(self) -> Arch:
        return self.decode(self.bounds()[0])

    def max(self) -> Arch:
        return self.decode(self.bounds()[1])

    def mutate(self, arch: Arch, rng: np.random.Generator, prob: float = 0.1) -> Arch:
        """Resample each variable with probability `prob` (once-for-all's mutation)."""
        x = self.encode(arch)
        _, xu = self.bounds()
        hit = rng.random(self.n_var) < prob
        x[hit] = rng.integers(0, xu + 1)[hit]
        return self.decode(x)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each variable from either parent with equal chance."""
        xa, xb = self.encode(a), self.encode(b)
        return self.decode(np.where(rng.random(self.n_var) < 0.5, xa, xb))

    def size(self) -> int:
        """Number of distinct subnets (blocks beyond a stage's depth do not count)."""
        total = (
            len(self.resolutions) * len(self.stem.widths) * max(1, len(self.last.widths)) * max(1, len(self.last.mix))
        )
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
                raise ArchError(
                    f"arch last = {arch.last} but space '{self.name}' ties the last conv to "
                    f"{self.last.expand} x the last stage's width ({tied})"
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
        if not isinstance(data, dict):
            raise ArchError(f"an arch must be a JSON object, got {type(data).__name__}")
        if data.get("space", self.name) != self.name:
            raise ArchError(f"arch is for space '{data['space']}', not '{self.name}'")
        allowed = {"space", "resolution", "stem", "stages", "last", "mix"}
        if set(data) - allowed:
            raise ArchError(f"unknown arch field(s) {sorted(set(data) - allowed)}; allowed: {sorted(allowed)}")
        for key in ("resolution", "stem", "stages", "last"):
            if key not in data:
                raise ArchError(f"arch is missing field '{key}'")
        res = data["resolution"]
        if not (isinstance(res, list) and len(res) == 2 and all(_is_int(v) for v in res)):
            raise ArchError(f"arch resolution must be [width, height], got {res!r}")
        if not _is_int(data["stem"]) or not _is_int(data["last"]) or not (_is_int(data.get("mix", 0))):
            raise ArchError("arch fields 'stem', 'last' and 'mix' must be integers")
        if not isinstance(data["stages"], list):
            raise ArchError("arch field 'stages' must be a list")
        stages = tuple(_stage_from_dict(s, i) for i, s in enumerate(data["stages"]))
        return self.validate(Arch((res[0], res[1]), data["stem"], stages, data["last"], data.get("mix")))

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
        parts = [p.strip() for p in text.strip().split("|")]
        head = re.fullmatch(r"(\d+)x(\d+) s(\d+)", parts[0]) if parts else None
        tail = re.fullmatch(r"l(\d+)(?: m(\d+))?", parts[-1]) if len(parts) > 1 else None
        if head is None or tail is None:
            raise ArchError(f"cannot read arch string {text!r}; expected like '{self.min()}'")
        stages = []
        for part in parts[1:-1]:
            m = re.fullmatch(r"w(\d+)((?: k\d+e\d+)+)", part)
            if m is None:
                raise ArchError(f"cannot read stage {part!r}; expected like 'w24 k3e4 k5e6'")
            blocks = re.findall(r"k(\d+)e(\d+)", m.group(2))
            stages.append(
                StageArch(int(m.group(1)), tuple(int(k) for k, _ in blocks), tuple(int(e) for _, e in blocks))
            )
        mix = None if tail.group(2) is None else int(tail.group(2))
        res = (int(head.group(1)), int(head.group(2)))
        arch = Arch(res, int(head.group(3)), tuple(stages), int(tail.group(1)), mix)
        return self.validate(arch)

    # ---- slots: which genes decide each block's signature (for tables and vectorised lookup) ----
    def gene(self, name: str) -> int:
        """Index of a named variable in the encoding (see `variables`)."""
        return self._gene_index[name]

    def _width_gene(self, source: int) -> int:
        return self.gene("stem.width") if source == -1 else self.gene(f"stages[{source}].width")

    def slots(self, task: str = "saliency") -> list[Slot]:
        """Every block position of a max-depth subnet with the genes its signature depends on.

        `position` indexes `block_signatures()` of an arch whose stages are all at maximum depth;
        a block beyond a stage's depth is absent (`depth_gene`, `min_depth`).
        """
        res, last = self.gene("resolution"), self._last_gene()
        self._check_head(check_task(task))
        if is_sod(task):
            return self._sod_slots(SodHead.parse(task))
        slots = self._encoder_slots(0)
        if task == "classification" and self.last.mix:
            mix = self.gene("last_conv.mix")
            return [*slots, Slot(len(slots), (res, last, mix)), Slot(len(slots) + 1, (mix,))]
        if task == "classification":
            return [*slots, Slot(len(slots), (res, last))]
        taps = [self._width_gene(s) for s in reversed(self.skip_sources())]  # deep first
        ups = [self._width_gene(s) for s in self.up_sources()]
        stem = self._width_gene(-1)
        steps = [(last, ups[0])] + [(ups[j - 1], taps[j - 1], ups[j]) for j in range(1, len(ups))]
        steps += [(ups[-1], stem), (stem,), (stem,)] + ([()] if blurs(task) else [])
        return slots + [Slot(len(slots) + j, tuple(dict.fromkeys((res, *g)))) for j, g in enumerate(steps)]

    def _last_gene(self) -> int:
        """The gene that decides the last conv's width: its own, or the last stage's when tied."""
        if self.last.expand is None:
            return self.gene("last_conv.width")
        return self.gene(f"stages[{len(self.stages) - 1}].width")

    def _check_head(self, task: str) -> None:
        if self.last.mix and task != "classification":
            raise ArchError(
                f"space '{self.name}' has a classifier feature-mix layer (last_conv.mix), which the {task} head "
                "does not use; use a space without last_conv.mix (e.g. alphanet)"
            )

    def _encoder_slots(self, offset: int) -> list[Slot]:
        res = self.gene("resolution")
        slots = [Slot(offset, (res, self.gene("stem.width")))]
        prev = self.gene("stem.width")
        for i, spec in enumerate(self.stages):
            width = self.gene(f"stages[{i}].width")
            for b in range(1, max(spec.depths) + 1):  # b counts blocks from 1: the depth that switches it on
                k, e = self.block_genes(i, b - 1)
                genes = (res, prev, width, k, e) if b == 1 else (res, width, k, e)
                optional = b > min(spec.depths)
                depth_gene = self.gene(f"stages[{i}].depth") if optional else None
                slots.append(Slot(offset + len(slots), genes, depth_gene, b))
            prev = width
        slots.append(Slot(offset + len(slots), tuple(dict.fromkeys((res, prev, self._last_gene())))))
        return slots

    def _sod_slots(self, head: SodHead) -> list[Slot]:
        """Slots of `_sod_blocks`: [localization encoder, FRM,] encoder, laterals, CFEMs, fusion steps."""
        res, last, stem = self.gene("resolution"), self._last_gene(), self.gene("stem.width")
        slots = self._encoder_slots(0)
        if head.focus:
            slots += [Slot(len(slots), (res, last, stem))]
            slots += self._encoder_slots(len(slots))
        levels = [self._width_gene(s) for s in self.skip_sources()] + [last]
        genes = [(res, g) for g in levels]
        genes += [(res,)] * ((len(levels) - 1 if head.decoder != "unet" else 0) + len(levels) + 1)
        return slots + [Slot(len(slots) + j, g) for j, g in enumerate(genes)]

    def check_resolution(self, resolution: tuple[int, int]) -> tuple[int, int]:
        """`resolution` (width, height) if the space offers it, else an `ArchError` listing those it does."""
        r = tuple(resolution)
        if r not in self.resolutions:
            allowed = ", ".join(f"{w}x{h}" for w, h in self.resolutions)
            raise ArchError(f"resolution {r[0]}x{r[1]} is not in space '{self.name}'; allowed: {allowed}")
        return r

    def slot_signatures(
        self, slot: Slot, task: str = "saliency", num_classes: int | None = None
    ) -> dict[tuple, BlockSignature]:
        """The signature of `slot` for every combination of its genes' choice indices."""
        template = self.encode(self.max())
        radices = [len(self._variables[g][1]) for g in slot.genes]
        out = {}
        for combo in np.ndindex(*radices):
            x = template.copy()
            x[list(slot.genes)] = combo
            out[combo] = self.block_signatures(self.decode(x), task, num_classes)[slot.position]
        return out

    def all_block_signatures(
        self, resolutions: list[tuple[int, int]] | None = None, task: str = "saliency", num_classes: int | None = None
    ) -> list[BlockSignature]:
        """Every distinct block signature the space can produce at the given resolutions (default: all)."""
        wanted = self.resolutions if resolutions is None else tuple(self.check_resolution(r) for r in resolutions)
        keep = {self.resolutions.index(r) for r in wanted}
        found: set[BlockSignature] = set()
        for slot in self.slots(task):
            found.update(
                sig for combo, sig in self.slot_signatures(slot, task, num_classes).items() if combo[0] in keep
            )
        return sorted(found)

    # ---- structure shared by the supernet, the signatures and the decoder -----------------
    def skip_sources(self) -> list[int]:
        """Encoder features the saliency decoder concatenates, shallow to deep (-1 = the stem).

        SalNAS taps the stem and, for each deeper resolution level but the deepest, the last stage
        at that level; the deepest level enters through the last convolution.
        """
        level = self.stem.stride
        last_at_level: dict[int, int] = {}
        for i, st in enumerate(self.stages):
            level *= st.stride
            last_at_level[level] = i
        deepest = max(last_at_level)
        return [-1] + [i for lv, i in sorted(last_at_level.items()) if lv not in (self.stem.stride, deepest)]

    def up_sources(self) -> list[int]:
        """Stages whose widths the saliency decoder's upsampling steps output, deep to shallow (-1 =
        the stem): at each level but the deepest, the last stage there. SalNAS's `decode_channel`
        (`salnas/models/attentive_nas_dynamic_model.py`): MBConv-5, -3, -2, -1; the stem's width
        comes last. MBConv-1's width is taken though the tap at that level is the stem's output."""
        level = self.stem.stride
        last_at_level = {level: -1}
        for i, st in enumerate(self.stages):
            level *= st.stride
            last_at_level[level] = i
        deepest = max(last_at_level)
        return [i for lv, i in sorted(last_at_level.items(), reverse=True) if lv != deepest]

    def block_signatures(
        self, arch: Arch, task: str = "saliency", num_classes: int | None = None
    ) -> list[BlockSignature]:
        """Per-block cost keys of `arch` with the given head, in execution order; `num_classes` is the
        width of a classifier's or a segmentation head's logits (default `hwnas.head.default_classes`)."""
        self._check_head(check_task(task))
        num_classes = num_classes or default_classes(task)
        self.validate(arch)
        w, h = arch.resolution
        sigs, features = self._encoder_signatures(arch, h, w)
        if is_sod(task):
            return self._sod_blocks(SodHead.parse(task), sigs, features, h, w)
        if task == "classification":
            last = sigs[-1]
            if self.last.mix:  # AlphaNet's v3 head: pool, feature mix, then the linear layer on 1x1
                last = BlockSignature(
                    "mix", last.out_h, last.out_w, last.cout, arch.mix, act=self.last.act, out_h=1, out_w=1
                )
                sigs.append(last)
            h_in, w_in = (1, 1) if last.op == "mix" else (last.out_h, last.out_w)
            sigs.append(BlockSignature("linear", h_in, w_in, last.cout, num_classes, out_h=1, out_w=1))
        else:
            classes = num_classes if is_segmentation(task) else None
            sigs += self._decoder_signatures(features, sigs[-1], h, w, blur=blurs(task), classes=classes)
        return sigs

    def sod_levels(self, features: list, bottleneck: BlockSignature) -> list[tuple[int, int, int]]:
        """The SOD head's encoder levels (h, w, channels), shallow to deep: the decoder's taps and the last conv."""
        return [features[i + 1] for i in self.skip_sources()] + [(bottleneck.out_h, bottleneck.out_w, bottleneck.cout)]

    def _sod_blocks(self, head: SodHead, encoder: list, features: list, h: int, w: int) -> list[BlockSignature]:
        levels = self.sod_levels(features, encoder[-1])
        laterals, cfems, steps = sod_signatures(head, levels, h, w, self.decoder_act)
        focus = [*encoder, frm_signature(levels[-1], features[0])] if head.focus else []
        return focus + encoder + laterals + cfems + steps

    def _encoder_signatures(self, arch: Arch, h: int, w: int) -> tuple[list[BlockSignature], list]:
        st = self.stem
        oh, ow = spatial_after(h, w, st.kernel, st.stride)
        sigs = [BlockSignature("conv", h, w, 3, arch.stem, st.kernel, st.stride, act=st.act, out_h=oh, out_w=ow)]
        features = [(oh, ow, arch.stem)]  # -1 (stem) first, then one per stage
        cin = arch.stem
        for spec, stage in zip(self.stages, arch.stages, strict=True):
            for b, (k, e) in enumerate(zip(stage.kernels, stage.expansions, strict=True)):
                stride = spec.stride if b == 0 else 1
                ih, iw = oh, ow
                oh, ow = spatial_after(ih, iw, k, stride)
                sigs.append(
                    BlockSignature(
                        "mbconv", ih, iw, cin, stage.width, k, stride, e, spec.se, spec.act, out_h=oh, out_w=ow
                    )
                )
                cin = stage.width
            features.append((oh, ow, stage.width))
        sigs.append(BlockSignature("conv", oh, ow, cin, arch.last, 1, 1, act=self.last.act, out_h=oh, out_w=ow))
        return sigs, features

    def _decoder_signatures(
        self, features: list, bottleneck: BlockSignature, h: int, w: int, *, blur: bool, classes: int | None = None
    ) -> list[BlockSignature]:
        """SalNAS's decoder (`decode_output0`..`6` of `salnas/models/attentive_nas_dynamic_model.py`):
        conv3x3-BN-act then a 2x upsampling, concatenating an encoder tap before each next step; two
        full-resolution steps, the last to one sigmoid channel; in eval, the Gaussian blur. With
        `classes` (segmentation) the last step gives that many logits (conv-BN, no activation)."""
        act = self.decoder_act
        taps = [features[i + 1] for i in self.skip_sources()]  # shallow -> deep
        ups = [features[i + 1][2] for i in self.up_sources()]  # deep -> shallow
        sigs = []
        x_h, x_w, x_c, skip = bottleneck.out_h, bottleneck.out_w, bottleneck.cout, 0
        for (t_h, t_w, t_c), c in zip(reversed(taps), ups, strict=True):
            sigs.append(BlockSignature("saldec", x_h, x_w, x_c, c, 3, act=act, skip=skip, out_h=t_h, out_w=t_w))
            x_h, x_w, x_c, skip = t_h, t_w, c, t_c
        c = taps[0][2]
        sigs.append(BlockSignature("saldec", x_h, x_w, x_c, c, 3, act=act, skip=skip, out_h=h, out_w=w))
        sigs.append(BlockSignature("saldec", h, w, c, c, 3, act=act, out_h=h, out_w=w))
        if classes is None:
            sigs.append(BlockSignature("saldec", h, w, c, 1, 3, act="sigmoid", out_h=h, out_w=w))
        else:
            sigs.append(BlockSignature("saldec", h, w, c, classes, 3, act="identity", out_h=h, out_w=w))
        if blur:
            sigs.append(BlockSignature("blur", h, w, 1, 1, BLUR_KERNEL, out_h=h, out_w=w))
        return sigs

    def params(self, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
        """Analytic trainable parameters of the extracted subnet."""
        return sum(s.params() for s in self.block_signatures(arch, task, num_classes))

    def flops(self, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
        """Analytic FLOPs per image (2 x MACs), as `torch.utils.flop_counter` counts them."""
        return sum(s.flops() for s in self.block_signatures(arch, task, num_classes))

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
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SearchSpace(name={self.name!r}, n_var={self.n_var}, size~1e{math.log10(self.size()):.1f})"


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


DEFAULT_SPACE = "alphanet"


def resolve_space(space: str | Path | None, checkpoint: str | Path | None = None) -> SearchSpace:
    """--space as every verb reads it: the preset or file given; else the checkpoint's (when a verb
    takes one); else alphanet. A space given beside a checkpoint is checked against it by its reader."""
    if space is None and checkpoint is not None:
        from hwnas.train.checkpoint import checkpoint_space, load_checkpoint

        return checkpoint_space(load_checkpoint(checkpoint), Path(checkpoint))
    return SearchSpace.load(space or DEFAULT_SPACE)
