"""SearchSpace and Arch: the SalNAS Table 1 preset, sizes, the three arch forms, bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import ArchError, SpaceError
from hwnas.nn.static import build_block
from hwnas.search.operators import crossover, mutate
from hwnas.space import SearchSpace
from hwnas.space.signature import BlockSignature, make_divisible

TINY = """
name = "tiny"
resolutions = [[32, 32], [64, 48]]
[stem]
widths = [8, 16]
[[stages]]
widths = [8]
depths = [1, 2]
kernels = [3, 5]
expansions = [1]
se = false
stride = 1
[[stages]]
widths = [16, 24]
depths = [1, 2, 3]
kernels = [3]
expansions = [3, 6]
se = true
stride = 2
[last_conv]
widths = [32]
"""


def test_alphanet_is_salnas_table1(alphanet):
    """The preset reproduces SalNAS Table 1 (with MBConv-4 widths {64, 72}, see the preset)."""
    assert alphanet.resolutions == ((256, 192), (384, 288))
    assert (alphanet.stem.widths, alphanet.stem.kernel, alphanet.stem.stride) == ((16, 24), 3, 2)
    table = [
        ((16, 24), (1, 2), (1,), False, 1),
        ((24, 32), (3, 4, 5), (4, 5, 6), False, 2),
        ((32, 40), (3, 4, 5, 6), (4, 5, 6), True, 2),
        ((64, 72), (3, 4, 5, 6), (4, 5, 6), False, 2),
        ((112, 120, 128), (3, 4, 5, 6, 7, 8), (4, 5, 6), True, 1),
        ((192, 200, 208, 216), (3, 4, 5, 6, 7, 8), (6,), True, 2),
        ((216, 224), (1, 2), (6,), True, 1),
    ]
    got = [(s.widths, s.depths, s.expansions, s.se, s.stride) for s in alphanet.stages]
    assert got == table
    assert all(s.kernels == (3, 5) for s in alphanet.stages)
    # the authors' space: one kernel and expansion per stage, the last conv tied at 6 x MBConv-7
    assert alphanet.choices == "stage" and (alphanet.last.expand, alphanet.last.widths) == (6, ())
    assert {alphanet.max().last, alphanet.min().last} == {6 * 224, 6 * 216}


def test_size_counts_distinct_subnets_by_enumeration():
    """size() equals the number of distinct archs found by decoding every encoding of a tiny space."""
    space = SearchSpace.from_toml(TINY)
    _, xu = space.bounds()
    archs = {space.decode(np.array(x)) for x in itertools.product(*(range(u + 1) for u in xu))}
    assert space.size() == len(archs)
    # by hand: 2 res * 2 stem * 1 last * [1 width * (2 + 2^2)] * [2 widths * (2 + 2^2 + 2^3)]
    assert space.size() == 2 * 2 * 1 * (1 * (2 + 4)) * (2 * (2 + 4 + 8))
    staged = SearchSpace.from_toml(TINY.replace('name = "tiny"', 'name = "tiny"\nchoices = "stage"'))
    _, xu = staged.bounds()
    archs = {staged.decode(np.array(x)) for x in itertools.product(*(range(u + 1) for u in xu))}
    # one kernel and expansion per stage: 2 res * 2 stem * [1 width * 2 depths * 2 k] * [2 widths * 3 depths * 2 e]
    assert staged.size() == len(archs) == 2 * 2 * (2 * 2) * (2 * 3 * 2)


def test_alphanet_sizes_per_stage_and_per_block():
    """The authors' sampler draws per stage: 2 res * 2 stem * prod(widths * depths * kernels * expansions)
    = 1.1e11; SalNAS's "over 10^19" counts per block, as `alphanet-block` does (~3.3e27)."""
    per_stage = 2 * 2 * (2 * 2 * 2) * (2 * 3 * 6) * (2 * 4 * 6) * (2 * 4 * 6) * (3 * 6 * 6) * (4 * 6 * 2) * (2 * 2 * 2)
    assert SearchSpace.load("alphanet").size() == per_stage == 110075314176
    block = SearchSpace.load("alphanet-block")
    assert block.size() == 3265618339483724178945736704 // 2 and block.size() > 10**19  # the last conv is tied now


def test_min_and_max_take_extreme_choices(alphanet):
    lo, hi = alphanet.min(), alphanet.max()
    assert lo.resolution == (256, 192) and hi.resolution == (384, 288)
    assert [s.depth for s in lo.stages] == [1, 3, 3, 3, 3, 3, 1]
    assert [s.depth for s in hi.stages] == [2, 5, 6, 6, 8, 8, 2]
    assert str(hi).startswith("384x288 s24 | w24 k5e1 k5e1 | w32 k5e6")
    assert lo.last == 1296 and hi.last == 1344


def archs(space: SearchSpace):
    _, xu = space.bounds()
    return st.tuples(*(st.integers(0, int(u)) for u in xu)).map(lambda x: space.decode(np.array(x)))


@pytest.mark.parametrize("preset", ["mini", "alphanet", "alphanet-block", "alphanet-imagenet"])
def test_roundtrips_property(preset):
    space = SearchSpace.load(preset)

    @settings(max_examples=150, deadline=None)
    @given(archs(space))
    def check(arch):
        assert space.arch_from_dict(json.loads(json.dumps(space.arch_to_dict(arch)))) == arch
        x = space.encode(arch)
        xl, xu = space.bounds()
        assert x.shape == (space.n_var,) and np.all(x >= xl) and np.all(x <= xu)
        assert space.decode(x) == arch
        assert space.parse(str(arch)) == arch
        assert hash(arch) == hash(space.decode(x))

    check()


def test_decode_rejects_out_of_bounds_and_wrong_length(mini):
    _, xu = mini.bounds()
    bad = xu.copy()
    bad[3] += 1
    with pytest.raises(ArchError, match=r"stages\[0\]\.depth = 1 is outside 0\.\.0"):
        mini.decode(bad)
    with pytest.raises(ArchError, match=f"has {mini.n_var} integers"):
        mini.decode(xu[:-1])


def test_sample_mutate_crossover_stay_in_space(mini):
    rng = np.random.default_rng(1)
    a, b = mini.encode(mini.sample(rng)), mini.encode(mini.sample(rng))
    _, xu = mini.bounds()
    assert np.array_equal(mutate(a, xu, rng, prob=0.0), a)
    assert np.array_equal(crossover(a, a, rng), a)
    for _ in range(50):
        child = mini.decode(crossover(mutate(a, xu, rng, 0.3), b, rng))
        assert mini.validate(child) is child
    depths = {mini.sample(rng).stages[4].depth for _ in range(200)}
    assert depths == {1, 2, 3}


def test_crossover_takes_each_gene_from_a_parent(mini):
    rng = np.random.default_rng(2)
    xa, xb = mini.encode(mini.min()), mini.encode(mini.max())
    for _ in range(20):
        x = crossover(xa, xb, rng)
        assert np.all((x == xa) | (x == xb))
        assert mini.validate(mini.decode(x))


def test_mbconv_signature_params_by_hand():
    sig = BlockSignature(
        "mbconv", 16, 16, 16, 24, kernel=3, stride=2, expansion=4, se=True, act="swish", out_h=8, out_w=8
    )
    # mid = 64, SE bottleneck 16: expand 16*64 + 2*64, depthwise 9*64 + 2*64,
    # SE 64*16 + 16 + 16*64 + 64, project 64*24 + 2*24, shortcut 1x1 conv 16*24 (AttentiveNAS)
    assert (sig.mid, sig.se_mid) == (64, 16)
    assert sig.params() == 1152 + 704 + 2128 + 1584 + 384
    assert sum(p.numel() for p in build_block(sig).parameters()) == sig.params()
    # FLOPs: 2*(16*16*16*64 + 8*8*64*9 + 64*16*2 + 8*8*64*24 + 8*8*16*24)
    assert sig.flops() == 2 * (262144 + 36864 + 2048 + 98304 + 24576)
    assert sig.shortcut_conv
    same = BlockSignature("mbconv", 8, 8, 24, 24, kernel=3, stride=1, expansion=4, act="swish", out_h=8, out_w=8)
    assert not same.shortcut_conv and same.params() == 24 * 96 + 192 + 9 * 96 + 192 + 96 * 24 + 48  # identity


def test_make_divisible_matches_mobilenet_rule():
    assert [make_divisible(v) for v in (16 * 5, 24 * 5, 20, 9, 60)] == [80, 120, 24, 16, 64]


def test_signatures_of_alphanet_min(alphanet):
    sigs = alphanet.block_signatures(alphanet.min())
    assert len(sigs) == 1 + 17 + 1 + 7 + 1
    stem, first, last = sigs[0], sigs[1], sigs[18]
    assert (stem.op, stem.h, stem.w, stem.cin, stem.cout, stem.out_h, stem.out_w) == ("conv", 192, 256, 3, 16, 96, 128)
    assert not first.shortcut_conv and first.stride == 1 and first.expansion == 1  # an identity shortcut
    assert (last.op, last.h, last.w, last.cin, last.cout) == ("conv", 6, 8, 216, 1296)
    dec = sigs[19:]
    assert [(d.cin, d.skip, d.cout, d.out_h) for d in dec] == [
        (1296, 0, 112, 12),
        (112, 112, 32, 24),
        (32, 32, 24, 48),
        (24, 24, 16, 96),
        (16, 16, 16, 192),
        (16, 0, 16, 192),
        (16, 0, 1, 192),
        (1, 0, 1, 192),  # the eval blur
    ]
    assert [d.op for d in dec] == ["saldec"] * 7 + ["blur"]
    assert alphanet.skip_sources() == [-1, 1, 2, 4]  # stem, MBConv-2, -3, -5 as in SalNAS
    assert alphanet.up_sources() == [4, 2, 1, 0]  # their decode_channel: MBConv-5, -3, -2, -1, then the stem
    wide_stem = alphanet.parse(str(alphanet.min()).replace("s16", "s24"))
    steps = alphanet.block_signatures(wide_stem, "saliency/noblur")[19:]
    assert [(d.cin, d.skip, d.cout) for d in steps[3:5]] == [
        (24, 24, 16),
        (16, 24, 24),
    ]  # MBConv-1's width, then the stem's
    assert len(steps) == 7


# ---- bad input -----------------------------------------------------------------------------
def test_unknown_preset_lists_presets():
    with pytest.raises(SpaceError, match="unknown search space 'alphanett'; presets: alphanet, alphanet-block, alph"):
        SearchSpace.load("alphanett")


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        SearchSpace.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "edit, message",
    [
        (("widths = [8, 16]\n", ""), r"missing field 'stem\.widths'"),
        (
            ("widths = [8, 16]", 'widths = "8"'),
            r"'stem\.widths' must be a non-empty list of distinct positive integers",
        ),
        (("kernels = [3, 5]", "kernels = [3, 4]"), r"'stages\[0\]\.kernels' must be a list of odd kernel sizes"),
        (("stride = 2", "stride = 3"), r"'stages\[1\]\.stride' must be 1 or 2, got 3"),
        (("se = true", 'se = "yes"'), r"'stages\[1\]\.se' must be true or false"),
        (('name = "tiny"', 'name = "tiny"\nwidth = 3'), r"unknown field\(s\) \['width'\]"),
        (("[[32, 32], [64, 48]]", "[[32]]"), r"'resolutions' must be a list of \[width, height\] pairs"),
        (
            ("[last_conv]", "[last_conv]\nact = 'gelu'"),
            r"'last_conv\.act' must be one of \['relu', 'hswish', 'swish'\]",
        ),
        (("[[stages]]", "[[stages"), "not valid TOML"),
        (("widths = [32]", "widths = [32]\nexpand = 6"), r"\[last_conv\] needs exactly one of 'widths'"),
        (('name = "tiny"', 'name = "tiny"\nchoices = "cell"'), r"'space\.choices' must be one of \['stage', 'block'\]"),
    ],
)
def test_bad_space_toml_names_the_field(edit, message):
    old, new = edit
    assert old in TINY
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_toml(TINY.replace(old, new, 1), source="tiny.toml")


def _arch_json(space):
    return space.arch_to_dict(space.min())


def test_arch_width_not_offered(alphanet):
    data = _arch_json(alphanet)
    data["stages"][3]["width"] = 62
    with pytest.raises(ArchError, match=r"stages\[3\]\.width = 62 is not in space 'alphanet'; allowed: \[64, 72\]"):
        alphanet.arch_from_dict(data)


def test_arch_depth_too_deep(alphanet):
    data = _arch_json(alphanet)
    data["stages"][0]["kernels"] = [3, 3, 3]
    data["stages"][0]["expansions"] = [1, 1, 1]
    data["stages"][0].pop("depth")
    with pytest.raises(ArchError, match=r"stages\[0\]\.depth = 3 .* allowed: \[1, 2\]"):
        alphanet.arch_from_dict(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(space="mini"), "arch is for space 'mini', not 'alphanet'"),
        (lambda d: d.pop("last"), "missing field 'last'"),
        (lambda d: d.update(resolution=[256]), r"resolution must be \[width, height\]"),
        (lambda d: d.update(resolution=[320, 240]), r"resolution = \(320, 240\) is not in space"),
        (lambda d: d.update(stem="16"), "'stem', 'stem_kernel', 'last' and 'mix' must be integers"),
        (lambda d: d.update(extra=1), r"unknown arch field\(s\) \['extra'\]"),
        (lambda d: d["stages"].pop(), "arch has 6 stages; space 'alphanet' has 7"),
        (lambda d: d["stages"][1].update(depth=4), r"stages\[1\]\.depth = 4 but it lists 3 blocks"),
        (lambda d: d["stages"][1]["kernels"].append(3), r"stages\[1\] has 4 kernels but 3 expansions"),
        (
            lambda d: d["stages"][2]["expansions"].__setitem__(0, 3),
            r"stages\[2\]\.expansions\[0\] = 3 .* allowed: \[4, 5, 6\]",
        ),
    ],
)
def test_bad_arch_json_names_the_field(alphanet, mutate, message):
    data = _arch_json(alphanet)
    mutate(data)
    with pytest.raises(ArchError, match=message):
        alphanet.arch_from_dict(data)


def test_arch_file_errors(alphanet, tmp_path):
    with pytest.raises(ArchError, match="does not exist"):
        alphanet.load_arch(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"resolution": [256, 192], "stem":')
    with pytest.raises(ArchError, match="is not valid JSON"):
        alphanet.load_arch(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ArchError, match="must be a JSON object"):
        alphanet.load_arch(bad)


def test_per_stage_and_tied_spaces_refuse_archs_outside_them(alphanet):
    line = str(alphanet.min())
    with pytest.raises(
        ArchError, match=r"stages\[1\] mixes kernels \[3, 5, 3\].*one kernel and one expansion per stage"
    ):
        alphanet.parse(line.replace("w24 k3e4 k3e4 k3e4", "w24 k3e4 k5e4 k3e4"))
    with pytest.raises(ArchError, match=r"last = 1344 but space 'alphanet' ties the last conv to 6 x .*\(1296\)"):
        alphanet.parse(line.replace("l1296", "l1344"))
    with pytest.raises(ArchError, match="feature-mix width"):
        alphanet.parse(line + " m1984")
    imagenet = SearchSpace.load("alphanet-imagenet")
    with pytest.raises(ArchError, match="feature-mix layer .* the saliency head does not use"):
        imagenet.block_signatures(imagenet.max(), "saliency")
    assert imagenet.parse(str(imagenet.max())).mix == 1984


def test_parse_rejects_garbage(mini):
    with pytest.raises(ArchError, match="cannot read arch string"):
        mini.parse("hello")
    with pytest.raises(ArchError, match="cannot read stage"):
        mini.parse("32x32 s8 | w8 k3 | l192")
