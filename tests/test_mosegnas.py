"""MoSegNAS's search space (Lu et al., Section III-B): its 29-integer encoding and size, the ResNets
it holds, exact extraction, the BiSeNetV1-R18 member against the BiSeNet reference's own counts
(tests/data/bisenet/heads.json, written by tools/bisenet_fixtures.py), and its latency table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.cli import app
from hwnas.errors import ArchError, SpaceError
from hwnas.hardware.table import LatencyTable
from hwnas.nn import Supernet
from hwnas.nn.static import SignatureModel, build_block, signature_inputs
from hwnas.nn.supernet import build_subnet
from hwnas.space import SearchSpace
from hwnas.space.signature import BlockSignature
from tests.cli import one_error_line, run_cli
from tests.conftest import randomize_bn
from tests.segdata import write_cityscapes
from tests.test_lut import synthetic_table

DATA = Path(__file__).parent / "data" / "bisenet"
RESNET18 = "2048x1024 s64k7 | w64 m64 m64 | w128 m128 m128 | w256 m256 m256 | w512 m512 m512 | l512"
RESNET50 = (
    "2048x1024 s64k7 | w256 m64 m64 m64 | w512 m128 m128 m128 m128 | w1024 m256 m256 m256 m256 m256 m256 "
    "| w2048 m512 m512 m512 | l2048"
)


@pytest.fixture(scope="module")
def mosegnas() -> SearchSpace:
    return SearchSpace.load("mosegnas")


def test_the_encoding_is_the_papers_29_integers_and_the_size_counted_by_hand(mosegnas):
    names = [name for name, _ in mosegnas.variables]
    assert len(names) == 29 and names[:3] == ["resolution", "stem.width", "stem.kernel"]
    per_stage = [sum(n.startswith(f"stages[{i}].") for n in names) for i in range(4)]
    assert per_stage == [6, 6, 8, 6]  # depth, width and 4 layers; stage 3 has 6 layers
    four = sum(4**d for d in (2, 3, 4))  # 4 intermediate widths per layer, depths 2-4
    six = sum(4**d for d in (2, 3, 4, 5, 6))
    assert mosegnas.size() == 6 * 3 * 3 * (2 * four) ** 3 * (2 * six)  # ~1.8e14
    arch = mosegnas.parse(RESNET50)
    assert mosegnas.encode(arch).tolist()[-6:] == [1, 1, 3, 3, 3, 0]  # w2048, depth 3, m512 x3, padding
    rng = np.random.default_rng(0)
    for a in [mosegnas.sample(rng) for _ in range(20)]:
        assert mosegnas.decode(mosegnas.encode(a)) == a
        assert mosegnas.parse(str(a)) == a and mosegnas.arch_from_dict(mosegnas.arch_to_dict(a)) == a


def test_hwnas_space_prints_the_structure(cli):
    result = cli(["space", "mosegnas", "--json"])
    summary = json.loads(result.stdout)
    assert summary["n_var"] == 29 and summary["size"] == SearchSpace.load("mosegnas").size()
    assert {row["task"] for row in summary["extremes"]} == {"classification", "segmentation"}
    text = cli(["space", "mosegnas"]).stdout
    assert "encoded variables: 29" in text and "bottleneck layers" in text


def test_the_spaces_hold_torchvisions_resnet18_and_resnet50(mosegnas):
    """torchvision's parameter counts of resnet18 and resnet50 (its model docs): 11,689,512 and 25,557,032."""
    basic = SearchSpace.load("mosegnas-basic")
    assert basic.params(basic.parse(RESNET18), "classification") == 11_689_512
    assert mosegnas.params(mosegnas.parse(RESNET50), "classification") == 25_557_032


def test_the_resnet18_member_is_bisenetv1_r18_by_the_references_own_counts():
    reference = json.loads((DATA / "heads.json").read_text())["bisenetv1_r18"]
    space = SearchSpace.load("mosegnas-basic")
    _, _, h, w = reference["input"]
    arch = space.parse(RESNET18)
    assert arch.resolution == (w, h)
    classes = reference["classes"]
    analytic = space.params(arch, "segmentation", classes), space.flops(arch, "segmentation", classes)
    with torch.device("meta"):
        net = build_subnet(space, arch, task="segmentation", num_classes=classes).eval()
        image = torch.empty(reference["input"])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = net(image)
    assert out.shape == (1, classes, h, w)
    module = sum(p.numel() for p in net.parameters()), counter.get_total_flops()
    for ours in (analytic, module):
        assert abs(ours[0] / reference["params"] - 1) < 0.01
        assert abs(ours[1] / reference["flops"] - 1) < 0.01


@pytest.mark.parametrize("name", ["mosegnas", "mosegnas-basic"])
def test_extraction_is_exact_on_10_random_archs(name):
    space = SearchSpace.load(name)
    torch.manual_seed(0)
    net = randomize_bn(Supernet(space, task="segmentation")).eval()
    rng = np.random.default_rng(1)
    x = torch.randn(1, 3, 64, 128)  # any size divisible by 32 runs; the space's smallest costs 10x more
    for _ in range(10):
        arch = space.sample(rng)
        with torch.no_grad():
            expected = net.extract(arch)(x)
            assert torch.equal(net(x), expected)  # max difference 0.0
        assert expected.shape == (1, 19, 64, 128)


def test_a_training_forward_gives_the_main_and_both_auxiliary_logits_at_the_image_size():
    space = SearchSpace.load("mosegnas-basic")
    net = Supernet(space, task="segmentation+aux", num_classes=5).train()
    net.set_active(space.min())
    outputs = net(torch.randn(2, 3, 64, 64))
    assert len(outputs) == 3 and all(o.shape == (2, 5, 64, 64) for o in outputs)
    sum(o.mean() for o in outputs).backward()
    assert net.head[0].heads.arm16.conv.conv.weight.grad[:, : space.min().stages[2].width].abs().sum() > 0


@pytest.mark.parametrize(
    "sig",
    [
        BlockSignature("convpool", 64, 96, 3, 48, 5, 2, out_h=16, out_w=24),
        BlockSignature("bottleneck", 16, 24, 48, 128, 3, 1, 32, out_h=16, out_w=24),
        BlockSignature("bottleneck", 16, 24, 128, 128, 3, 2, 64, out_h=8, out_w=12),
        BlockSignature("basic", 16, 24, 64, 64, 3, 1, 48, out_h=16, out_w=24),
        BlockSignature("basic", 16, 24, 32, 64, 3, 2, 16, out_h=8, out_w=12),
        BlockSignature("bisenet", 64, 96, 40, 7, skip=56, out_h=64, out_w=96),
    ],
    ids=lambda s: s.key,
)
def test_each_new_block_costs_what_its_signature_says(sig):
    block = SignatureModel(sig).eval()
    inputs = [torch.randn(s) for s in signature_inputs(sig)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = block(*inputs)
    assert out.shape == (1, sig.cout, sig.out_h, sig.out_w)
    assert sum(p.numel() for p in build_block(sig).parameters()) == sig.params()
    assert counter.get_total_flops() == sig.flops()


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_a_table_prices_every_arch_as_its_block_sum(mosegnas, task):
    table = synthetic_table(mosegnas, task=task, resolutions=[(512, 256)])
    rng = np.random.default_rng(0)
    archs = [a for a in (mosegnas.sample(rng) for _ in range(300)) if a.resolution == (512, 256)]
    by_hand = [
        sum(s.flops() / 1e9 + 0.001 * s.kernel for s in mosegnas.block_signatures(a, task)) + 0.01 for a in archs
    ]
    np.testing.assert_allclose(table.predict_many(archs), by_hand, rtol=1e-9)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t + "\n[last_conv]\nexpand = 6\n", "a bottleneck space has no 'last_conv'"),
        (
            lambda t: t.replace("mids = [16, 32, 48, 64]", "mids = [16, 32]\nkernels = [3, 5]"),
            "unknown field(s) ['kernels']",
        ),
        (lambda t: t.replace("[512, 256],", "[500, 250],"), "must be multiples of 32"),
        (lambda t: t.replace("kernels = [3, 5, 7]", "kernels = [3, 4]"), "'stem.kernels' must be a list of odd"),
        (lambda t: t.replace('block = "bottleneck"', 'block = "dense"'), "field 'space.block' must be one of"),
        (lambda t: t.replace("pool = true", "pool = false"), "stages at 1/2, 1/4, 1/8, 1/16"),
    ],
)
def test_a_bad_residual_spec_is_one_error_naming_the_field(edit, message):
    from hwnas.space.spec import spec_text

    text, _ = spec_text("mosegnas")
    with pytest.raises(SpaceError, match=None) as info:
        SearchSpace.from_toml(edit(text), source="bad.toml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_archs_from_another_kind_of_space_are_refused(mosegnas):
    with pytest.raises(ArchError, match="stem_kernel = None is not in space 'mosegnas'"):
        mosegnas.validate(replace(mosegnas.max(), stem_kernel=None))  # an MBConv space's arch has none
    with pytest.raises(ArchError, match=r"stages\[0\].expansions\[0\] = 24 is not in space"):
        mosegnas.parse(RESNET50.replace("w256 m64", "w256 m24", 1))
    with pytest.raises(ArchError, match="the saliency head needs an MBConv space"):
        mosegnas.params(mosegnas.max(), "saliency")


def test_a_bad_arch_line_is_one_line_exit_2(cli):
    result = cli(["arch", RESNET50.replace("m64", "m65", 1), "--space", "mosegnas"], code=2)
    assert "is not in space 'mosegnas'" in result.output and "Traceback" not in result.output
    result = cli(["arch", "min", "--space", "mosegnas", "--task", "sod"], code=2)
    assert "needs an MBConv space" in result.output


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    runner = CliRunner()

    def invoke(args: list[str], code: int = 0):
        result = runner.invoke(app, args, env={"COLUMNS": "160"})
        assert result.exit_code == code, result.output
        return result

    return invoke


MICRO = Path(__file__).parent / "data" / "mosegnas-micro.toml"


@pytest.mark.slow
def test_the_mosegnas_loop_on_its_own_space_trains_searches_and_exports_verified(tmp_path):
    """MoSegNAS end to end on its space's structure (tests/data/mosegnas-micro.toml: the preset at
    test widths) and a Cityscapes-format folder: train, profile, the MoSegNAS search, ONNX export."""
    data, ckpt, lut = tmp_path / "cityscapes", tmp_path / "seg.pt", tmp_path / "lut.parquet"
    cities = {"train": ["aachen", "bochum", "bremen", "cologne"], "val": ["frankfurt"]}
    write_cityscapes(data, cities=cities, size=(256, 128), varied=True)  # BiSeNet's pooled BNs need varied images
    run_cli(
        "train", "supernet", "--space", str(MICRO), "--task", "segmentation+aux", "--data", str(data), "--epochs", "1",
        "--batch-size", "2", "--crop", "96x64", "--out", str(ckpt),
    )  # fmt: skip
    run_cli("profile", "--device", "cpu", "--space", str(MICRO), "--task", "segmentation+aux", "--rounds", "1",
            "--resolution", "128x64", "--out", str(lut))  # fmt: skip
    table = LatencyTable.load(lut, SearchSpace.load(MICRO))
    assert table.classes == 19 and {s.op for s in table.space.all_block_signatures([(128, 64)], "segmentation")} == {
        "convpool", "bottleneck", "bisenet"
    }  # fmt: skip
    space = table.space
    rng = np.random.default_rng(0)  # a budget most subnets meet (the budget's own logic: the mini tests)
    limit = float(np.max([table.predict(replace(space.sample(rng), resolution=(128, 64))) for _ in range(200)]))
    out = tmp_path / "search"
    proc = run_cli(
        "search", "--device", "cpu", "--budget", f"{limit:.3f}ms", "--supernet", str(ckpt), "--lut", str(lut),
        "--algo", "mosegnas", "--evals", "8", "--data", str(data), "--out", str(out),
    )  # fmt: skip
    chosen = space.arch_from_dict(json.loads((out / "best.json").read_text()))
    assert chosen.residual and table.predict(chosen) <= limit * 1.001 and "miou (supernet)" in proc.stdout
    exported = tmp_path / "export"
    run_cli("export", "--supernet", str(ckpt), "--arch", str(out / "best.json"), "--format", "onnx", "--device", "cpu",
            "--lut", str(lut), "--data", str(data), "--out", str(exported), check=False)  # fmt: skip
    manifest = json.loads(next(exported.glob("*.onnx.json")).read_text())
    # The file computes the subnet's function: within 1e-4 of the output's range. The element-wise check
    # may trip here: BiSeNet's BNs after a global pooling, re-estimated on 8 noise images after one
    # epoch, hold variances of ~1e-3 that scale float rounding up about 30 times (seen 1.7e-4 once in 8).
    assert manifest["output"]["num_classes"] == 19 and manifest["verification"]["numerics"]["max_rel"] < 1e-4
    args = ("evaluate", "--supernet", str(ckpt), "--arch", str(out / "best.json"), "--data", str(data))
    proc = run_cli(*args, "--scales", "0.75,1,1.25")
    assert "mIoU" in proc.stdout  # the subnet runs at 128x64; its probabilities are scored on the 256x128 labels
    assert "scored at original size, probabilities averaged over input scales 0.75, 1, 1.25" in proc.stdout
    assert "--scales must look like" in one_error_line(run_cli(*args, "--scales", "big", check=False))
