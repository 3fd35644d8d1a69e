"""The TOML form of a search space: presets in `hwnas/space/presets/*.toml` or a user's file, read
into the frozen specs a `SearchSpace` is built from, every field checked and named in its error.

The space follows SalNAS (Termritthikun et al.), Section 3.1.2 and Table 1: a stem convolution,
MBConv stages and a last 1x1 convolution, with resolution chosen globally, width and depth per
stage, and kernel and expansion per stage (`choices = "stage"`, as the authors' sampler
`sample_active_subnet` draws them) or per block (`choices = "block"`). The last convolution is
AlphaNet's "v3 head" final expand, `expand` x the last stage's width (`last_conv.expand`), or a
free width choice (`last_conv.widths`); `last_conv.mix` adds AlphaNet's classifier feature-mix
widths.

`block = "bottleneck"` or `"basic"` makes a residual space, MoSegNAS's (Lu et al., Section III-B
and Fig. 1): a stem of one conv with a kernel choice (`stem.kernels`) and ResNet's 3x3/2 max pool,
four stages of residual layers whose intermediate width each layer chooses (`stages.mids`), no last
conv (the stages' output is the tail's), and BiSeNet's heads as the segmentation decoder. A
bottleneck layer is 1x1 compress -> 3x3 -> 1x1 expand (the paper's); a basic layer is two 3x3s
(ResNet-18's, so that space holds BiSeNet's own context path).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hwnas.config import check_name, load_toml
from hwnas.errors import SpaceError
from hwnas.registry import Registry
from hwnas.space.signature import ACTIVATIONS, BISENET_STRIDE

ENCODER_ACTS = tuple(a for a in ACTIVATIONS if a != "sigmoid")
TOP_FIELDS = {
    "name",
    "description",
    "resolutions",
    "choices",
    "block",
    "stem",
    "stages",
    "last_conv",
    "decoder",
    "notes",
}
CHOICES = ("stage", "block")
BLOCKS = ("mbconv", "bottleneck", "basic")  # the layer a space's stages are made of
RESIDUAL = ("bottleneck", "basic")
RESIDUAL_STAGE_FIELDS = {"widths", "depths", "mids", "stride", "act"}


@dataclass(frozen=True)
class StemSpec:
    """The stem conv; `kernels`: its kernel choices where the kernel is a gene (residual spaces, then
    `kernel` is the largest); `pool`: ResNet's 3x3/2 max pool after it."""

    widths: tuple[int, ...]
    kernel: int
    stride: int
    act: str
    kernels: tuple[int, ...] = ()
    pool: bool = False


@dataclass(frozen=True)
class StageSpec:
    """A stage's choices. In a residual space `kernels` is (3,) and `expansions` holds the layers'
    intermediate widths in channels (the TOML's `mids`), not ratios."""

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


PRESETS: Registry[Path] = Registry(  # a packaged space's name -> its file in hwnas/space/presets/
    "search space",
    {
        name: Path(f"{name}.toml")
        for name in ("alphanet", "alphanet-block", "alphanet-imagenet", "mini", "mosegnas", "mosegnas-basic")
    },
    error=SpaceError,
    listing="presets",
    hint=", or give the path of a .toml file; nb201 (NAS-Bench-201's cell, a table of every answer) is searched "
    "with `hwnas search --space nb201`",
)


def presets() -> list[str]:
    """The names of the packaged spaces."""
    return PRESETS.names()


def spec_text(name_or_path: str | Path) -> tuple[str, str]:
    """(TOML text, where it came from) of a preset by name (`alphanet`, `mini`) or a TOML file by path."""
    text_name = str(name_or_path)
    if text_name in PRESETS:
        text = (resources.files("hwnas.space") / "presets" / PRESETS.get(text_name).name).read_text()
        return text, f"preset '{text_name}'"
    path = Path(text_name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpaceError(f"search-space file {path} does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    raise PRESETS.unknown(text_name)


def read_spec(text: str, *, source: str = "<toml>") -> dict[str, Any]:
    """The keyword arguments of `SearchSpace(...)` that the TOML `text` describes."""
    data = load_toml(text, source=source, allowed=TOP_FIELDS, error=SpaceError)
    top = _Fields(data, "space", source)
    name = check_name(data.get("name"), source=source, error=SpaceError)
    block = top.choice("block", BLOCKS, "mbconv")
    if block in RESIDUAL:
        return {"name": name, "block": block, **_read_residual(data, top, source)}
    stem_f = _Fields(top.get("stem"), "stem", source)
    stem = StemSpec(
        widths=stem_f.ints("widths"),
        kernel=stem_f.int("kernel", 3),
        stride=stem_f.int("stride", 2),
        act=stem_f.choice("act", ENCODER_ACTS, "swish"),
    )
    stages = tuple(_parse_stage(raw, i, source) for i, raw in enumerate(_stage_tables(top, source)))
    last = _parse_last(_Fields(top.get("last_conv"), "last_conv", source))
    dec_f = _Fields(data.get("decoder", {}), "decoder", source)
    return {
        "name": name,
        "description": str(data.get("description", "")),
        "resolutions": _parse_resolutions(top.get("resolutions"), source),
        "stem": stem,
        "stages": stages,
        "last": last,
        "decoder_act": dec_f.choice("act", ENCODER_ACTS, "swish"),
        "choices": top.choice("choices", CHOICES, "block"),
    }


def _stage_tables(top: _Fields, source: str) -> list:
    raw_stages = top.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpaceError(f"{source}: field 'stages' must be a non-empty array of tables")
    return raw_stages


def _read_residual(data: dict, top: _Fields, source: str) -> dict[str, Any]:
    """A residual space (`block = "bottleneck"` or `"basic"`): stem kernels and widths, max pool,
    stages of `mids`; no last conv and no decoder settings (BiSeNet's heads are fixed)."""
    for field in ("last_conv", "decoder", "choices"):
        if field in data:
            raise SpaceError(
                f"{source}: a {data['block']} space has no '{field}' (its stages end in the tail, BiSeNet's "
                "heads are its decoder, and each layer chooses its own intermediate width)"
            )
    stem_f = _Fields(top.get("stem"), "stem", source)
    kernels = stem_f.ints("kernels")
    if any(k % 2 == 0 for k in kernels):
        raise stem_f._fail("kernels", "a list of odd kernel sizes")
    stem = StemSpec(
        widths=stem_f.ints("widths"),
        kernel=max(kernels),
        stride=stem_f.int("stride", 2),
        act=stem_f.choice("act", ENCODER_ACTS, "relu"),
        kernels=kernels,
        pool=stem_f.bool("pool", True),
    )
    stages = []
    for i, raw in enumerate(_stage_tables(top, source)):
        f = _Fields(raw, f"stages[{i}]", source)
        unknown = set(raw) - RESIDUAL_STAGE_FIELDS
        if unknown:
            raise SpaceError(
                f"{source}: stages[{i}] of a {data['block']} space has unknown field(s) {sorted(unknown)}; "
                f"allowed: {sorted(RESIDUAL_STAGE_FIELDS)}"
            )
        stride = f.int("stride")
        if stride not in (1, 2):
            raise f._fail("stride", "1 or 2")
        stages.append(
            StageSpec(
                widths=f.ints("widths"),
                depths=f.ints("depths"),
                kernels=(3,),
                expansions=f.ints("mids"),
                se=False,
                stride=stride,
                act=f.choice("act", ENCODER_ACTS, "relu"),
            )
        )
    ends, scale = [], stem.stride * (2 if stem.pool else 1)  # each stage's output stride
    for st in stages:
        scale *= st.stride
        ends.append(scale)
    if ends[-2:] != [BISENET_STRIDE // 2, BISENET_STRIDE]:
        raise SpaceError(
            f"{source}: BiSeNet's heads read a {data['block']} space's last two stages at 1/16 and 1/32 of the input; "
            f"its stem and strides end its stages at {', '.join(f'1/{e}' for e in ends)}"
        )
    resolutions = _parse_resolutions(top.get("resolutions"), source)
    if any(w % BISENET_STRIDE or h % BISENET_STRIDE for w, h in resolutions):
        raise SpaceError(
            f"{source}: a {data['block']} space's resolutions must be multiples of 32 (BiSeNet's heads meet its "
            f"1/8, 1/16 and 1/32 maps), got {[list(r) for r in resolutions]}"
        )
    return {
        "description": str(data.get("description", "")),
        "resolutions": resolutions,
        "stem": stem,
        "stages": tuple(stages),
        "last": LastSpec(widths=(), act=stem.act, expand=1),  # no conv: the last stage's output itself
        "decoder_act": stem.act,
        "choices": "block",
    }


def _parse_last(f: _Fields) -> LastSpec:
    act = f.choice("act", ENCODER_ACTS, "swish")
    mix = f.ints("mix") if "mix" in f.table else ()
    if ("widths" in f.table) == ("expand" in f.table):
        raise SpaceError(
            f"{f.source}: [last_conv] needs exactly one of 'widths' (a free choice) or 'expand' "
            "(the width is expand x the last stage's, AlphaNet's v3 head)"
        )
    if "expand" in f.table:
        return LastSpec(widths=(), act=act, expand=f.int("expand"), mix=mix)
    return LastSpec(widths=f.ints("widths"), act=act, mix=mix)


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
        act=f.choice("act", ENCODER_ACTS, "swish"),
    )
