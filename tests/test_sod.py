"""FocusNet's SOD head: extraction parity (FOCUS on and off, every decoder of the ablation), analytic
params/FLOPs, table look-ups, the loss terms by hand, the CFEM/FRM blocks on ONNX Runtime, and a
trained SOD supernet exported to ONNX through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.errors import ArchError
from hwnas.nn import Supernet
from hwnas.nn.static import SignatureModel, signature_inputs
from hwnas.space import SearchSpace
from hwnas.space.tasks import SodHead, check_task
from hwnas.train.losses import sod_loss, tracer_pixel_weights, tracer_terms
from tests.cli import one_error_line, run_cli
from tests.conftest import randomize_bn
from tests.test_lut import synthetic_table

VARIANTS = ["sod", "sod/cfem", "sod/unet", "sod+focus", "sod/unet+focus"]


def _archs(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.min(), space.max()] + [space.sample(rng) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("task", VARIANTS)
def test_extracted_sod_subnet_matches_the_supernet(mini, task):
    torch.manual_seed(0)
    net = randomize_bn(Supernet(mini, task=task)).eval()
    for i, arch in enumerate(_archs(mini, 6)):
        w, h = arch.resolution
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            net.set_active(arch)
            expected = net(x)
            sub = net.extract(arch).eval()
            got = sub(x)
        assert got.shape == (2, 1, h, w) and 0 <= float(got.min()) and float(got.max()) <= 1
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        # params and FLOPs of the inference graph (both backbones with FOCUS; the training-only
        # auxiliary localization conv is not part of it) equal the analytic counts of the signatures
        params = sum(p.numel() for n, p in sub.named_parameters() if not n.startswith("aux."))
        assert params == mini.params(arch, task)
        if i < 2:
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                sub(x[:1])  # FLOPs are per image
            assert counter.get_total_flops() == mini.flops(arch, task)


def test_focus_counts_both_backbones_and_trains_with_the_localization_output(mini):
    arch = mini.max()
    plain, focus = mini.block_signatures(arch, "sod"), mini.block_signatures(arch, "sod+focus")
    encoder = 2 + sum(st.depth for st in arch.stages)
    assert len(focus) == len(plain) + encoder + 1 and [s.op for s in focus].count("frm") == 1
    assert mini.params(arch, "sod+focus") > mini.params(arch, "sod") + mini.params(arch, "classification", 1) // 2
    net = Supernet(mini, task="sod+focus").train()
    w, h = arch.resolution
    main, located = net(torch.randn(2, 3, h, w))
    assert main.shape == (2, 1, h, w) and located.shape == (2, 1, h // 32, w // 32)
    sub = net.extract(arch).eval()
    assert isinstance(sub(torch.randn(1, 3, h, w)), torch.Tensor)  # inference: the map only


@pytest.mark.parametrize("task", ["sod", "sod/unet+focus"])
def test_table_predicts_sod_archs_vectorised(mini, task):
    table = synthetic_table(mini, task=task)
    archs = _archs(mini, 100)
    one_by_one = np.array([table.predict(a) for a in archs])
    np.testing.assert_allclose(table.predict_many(archs), one_by_one, rtol=1e-12)
    ops = {s.op for s in mini.all_block_signatures(None, task)}
    assert {"dec", "conv", "mbconv"} <= ops and ("frm" in ops) == ("focus" in task)
    assert ("cfem" in ops) == ("unet" not in task)


def test_task_names_are_validated():
    assert SodHead.parse("sod/cfem+focus") == SodHead("cfem", True) and SodHead("unet", True).task == "sod/unet+focus"
    for bad in ("sod/afe2", "sod+fokus", "sodx", "detection"):
        with pytest.raises(ArchError, match="unknown"):
            check_task(bad)


@pytest.mark.parametrize("op", ["cfem", "frm"])
def test_head_blocks_run_on_onnxruntime_like_torch(mini, op):
    from hwnas.hardware.backends import get_backend
    from hwnas.hardware.device import load_device
    from tests.test_backends import DEVICES

    sig = next(s for s in mini.all_block_signatures([(32, 32)], "sod+focus") if s.op == op)
    model = randomize_bn(SignatureModel(sig)).eval()
    shapes = signature_inputs(sig)
    inputs = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    runnable = get_backend(load_device("cpu", DEVICES)).compile(model, shapes)
    with torch.no_grad():
        expected = model(*map(torch.from_numpy, inputs))
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = runnable.run(inputs)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4)


# ---- loss ---------------------------------------------------------------------------------------
def test_sod_loss_equals_tracers_own_function():
    """tests/data/tracer: TRACER's `adaptive_pixel_intensity_loss` run on these inputs (tools/tracer_fixtures.py)."""
    folder = Path(__file__).parent / "data" / "tracer"
    ref = json.loads((folder / "api_loss.json").read_text())
    with np.load(folder / "api_loss.npz", allow_pickle=False) as z:
        pred, mask = torch.from_numpy(z["pred"]), torch.from_numpy(z["mask"])
    assert float(sod_loss(pred, mask, mask)) == pytest.approx(ref["batch"], rel=1e-5)
    assert float(sod_loss(pred[1:2], mask[1:2], mask[1:2])) == pytest.approx(ref["second_alone"], rel=1e-5)


def test_tracer_terms_by_hand():
    p = torch.tensor([[[[0.8, 0.2], [0.6, 0.1]]]])
    g = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    w = torch.tensor([[[[3.0, 1.0], [1.0, 1.0]]]])  # one boundary pixel: sum(w) 6, sum(w + .5) 8, sum(w - 1) 2
    terms = tracer_terms(p, g, w)
    bce = -(np.log(0.8) + np.log(0.8) + np.log(0.6) + np.log(0.9)) / 4  # a plain mean, then scaled
    assert float(terms["bce"]) == pytest.approx(bce * 6 / 8, rel=1e-5)
    inter, union = 3 * 0.8 + 0.6, 3 * 1.8 + 0.2 + 1.6 + 0.1
    assert float(terms["iou"]) == pytest.approx(1 - (inter + 1) / (union - inter + 1), rel=1e-6)
    assert float(terms["l1"]) == pytest.approx((0.2 + 0.2 + 0.4 + 0.1) / 4 * 6 / 2, rel=1e-6)
    empty = tracer_terms(p, torch.zeros_like(g), torch.ones_like(w))  # no object: TRACER's aMAE would be inf
    assert float(empty["l1"]) == 0.0 and torch.isfinite(empty["bce"])


def test_pixel_weights_grow_at_object_boundaries_and_aux_loss_adds():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    w = tracer_pixel_weights(mask)
    assert float(w.min()) == 1.0 and float(w[0, 0, 0, 0]) == 1.0 and float(w[0, 0, 32, 32]) == 1.0
    assert float(w[0, 0, 16, 16]) > 1.5 and float(w.max()) <= 2.5
    assert float(w[0, 0, 15, 15]) == 1.0  # background weighs 1, however near the object
    perfect = mask.clamp(1e-4, 1 - 1e-4)
    assert float(sod_loss(perfect, mask, mask)) < 1e-2
    located = torch.zeros(1, 1, 2, 2)  # logits 0: BCE log 2 against any target
    with_aux = sod_loss(perfect, mask, mask, located=located)
    assert float(with_aux - sod_loss(perfect, mask, mask)) == pytest.approx(np.log(2), rel=1e-5)


# ---- end to end: train, score, export ----------------------------------------------------------
@pytest.mark.slow
def test_sod_supernet_trains_scores_and_exports_to_onnx(tmp_path):
    ckpt = tmp_path / "sod.pt"
    proc = run_cli(
        "train", "supernet", "--space", "mini", "--task", "sod", "--focus", "--epochs", "1", "--batch-size", "8",
        "--train-size", "16", "--val-size", "8", "--out", str(ckpt),
    )  # fmt: skip
    assert "sm " in proc.stdout and "mae " in proc.stdout
    from hwnas.search.accuracy import SupernetEvaluator

    scorer = SupernetEvaluator(ckpt, SearchSpace.load("mini"))  # what `hwnas search` ranks SOD subnets by
    assert scorer.metric == "sm" and 0 < scorer(scorer.space.min()) <= 1
    out = tmp_path / "export"
    run_cli("export", "--supernet", str(ckpt), "--arch", "min", "--format", "onnx", "--out", str(out))
    manifest = json.loads(next(out.glob("*.onnx.json")).read_text())
    assert manifest["output"]["task"] == "sod+focus" and "salient-object" in manifest["output"]["meaning"]
    assert manifest["verification"]["numerics"]["passed"] and manifest["verification"]["numerics"]["max_abs"] < 1e-4
    line = one_error_line(
        run_cli(
            "train",
            "supernet",
            "--space",
            "mini",
            "--task",
            "saliency",
            "--focus",
            "--out",
            str(tmp_path / "x.pt"),
            check=False,
        )  # fmt: skip
    )
    assert "switch parts of the sod head" in line
    line = one_error_line(run_cli("train", "supernet", "--task", "sod", "--no-cfem", "--out", "x.pt", check=False))
    assert "--no-cfem needs --no-afe" in line


def test_frm_convolves_before_upsampling_with_the_same_eval_output_and_fewer_flops():
    """FocusNet draws the FRM's 1x1 conv after the upsampling; run before it, the eval output is the
    same (a per-pixel linear map and BN's affine commute with bilinear upsampling) at h*w/(H*W) the
    convolution's FLOPs."""
    from hwnas.nn.heads.sod import FRM, resize
    from hwnas.space.signatures import frm_signature

    sig = frm_signature((4, 6, 48), (32, 48, 16))
    frm = randomize_bn(FRM(sig)).eval()
    x = torch.randn(2, 48, 4, 6)
    with torch.no_grad():
        after = frm.adjust(resize(frm.weigh(x), (32, 48)))  # the paper's order
        torch.testing.assert_close(frm(x), after, atol=1e-5, rtol=1e-5)
        with FlopCounterMode(display=False) as counter:
            frm(x[:1])
    assert counter.get_total_flops() == sig.flops()
    assert sig.flops() - 4 * 48 * sig.se_mid == 2 * 4 * 6 * 48 * 16  # the conv at the deep 4x6, not 32x48
