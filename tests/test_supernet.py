"""Supernet and extraction: exact parity, plain layers, analytic params/FLOPs, export, BN recalibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import hwnas.nn.dynamic as dynamic
from hwnas.errors import ArchError, HwnasError
from hwnas.nn import Supernet
from hwnas.nn.blocks import GaussianBlur
from hwnas.nn.static import build_block
from hwnas.train.bn import recalibrate_bn

N_RANDOM = 50


def _archs(space, n=N_RANDOM, seed=0):
    rng = np.random.default_rng(seed)
    return [space.min(), space.max()] + [space.sample(rng) for _ in range(n)]


def _input(arch, batch=1, seed=0):
    w, h = arch.resolution
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _assert_plain(module):
    for m in module.modules():
        assert not isinstance(
            m, dynamic.DynamicConv2d | dynamic.DynamicBatchNorm2d | dynamic.DynamicLinear | dynamic.DynamicSE
        )
        assert type(m).__module__.split(".")[0] in ("torch", "hwnas")
        assert "dynamic" not in type(m).__name__.lower()
        if not list(m.children()):  # leaves are torch.nn layers, or the saliency head's fixed blur
            assert type(m).__module__.startswith("torch.nn") or isinstance(m, GaussianBlur), type(m)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mini", "alphanet"])
@pytest.mark.parametrize("task", ["saliency", "classification"])
def test_extract_matches_supernet(supernets, preset, task):
    """For min, max and 50 random archs: extract(arch)(x) == supernet(x) under set_active(arch),
    exact params, and FLOPs equal to FlopCounterMode's count."""
    net = supernets[preset, task]
    space = net.space
    for i, arch in enumerate(_archs(space)):
        x = _input(arch, seed=i)
        with torch.no_grad():
            net.set_active(arch)
            expected = net(x)
            sub = net.extract(arch).eval()
            got = sub(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert sum(p.numel() for p in sub.parameters()) == space.params(arch, task, 10)
        if i < 4:  # counting FLOPs re-runs the model; a few archs per case suffice
            _assert_plain(sub)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                sub(x)
            assert counter.get_total_flops() == space.flops(arch, task, 10)


def test_output_shapes(supernets, mini):
    arch = mini.max()
    x = _input(arch, batch=3)
    sal, cls = supernets["mini", "saliency"], supernets["mini", "classification"]
    sal.set_active(arch)
    cls.set_active(arch)
    with torch.no_grad():
        y = sal(x)
        assert y.shape == (3, 1, 64, 64) and float(y.min()) >= 0 and float(y.max()) <= 1
        assert cls(x).shape == (3, 10)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mini", "alphanet"])
def test_extracted_subnet_traces_and_exports_to_onnx(supernets, preset, tmp_path):
    """torch.jit.trace and torch.onnx.export accept extracted subnets, and ONNX Runtime agrees."""
    import onnxruntime as ort

    net = supernets[preset, "saliency"]
    for arch in (net.space.min(), net.space.max()):
        sub = net.extract(arch).eval()
        x = _input(arch)
        with torch.no_grad():
            ref = sub(x)
            traced = torch.jit.trace(sub, x)
            torch.testing.assert_close(traced(x), ref, rtol=0, atol=1e-6)
        path = tmp_path / f"{preset}.onnx"
        torch.onnx.export(sub, (x,), str(path), input_names=["image"], output_names=["saliency"])
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-4)


def test_extraction_copies_weights(supernets, mini):
    net = supernets["mini", "saliency"]
    sub = net.extract(mini.min())
    with torch.no_grad():
        before = net.stem.conv.weight.clone()
        sub.stem.conv.weight.add_(1.0)
    assert torch.equal(net.stem.conv.weight, before)


def test_training_step_updates_only_active_slice(mini):
    torch.manual_seed(0)
    net = Supernet(mini, task="saliency")
    arch = mini.min()
    net.set_active(arch)
    x = _input(arch, batch=2)
    net(x).mean().backward()
    grad = net.stem.conv.weight.grad
    assert grad[: arch.stem].abs().sum() > 0
    assert grad[arch.stem :].abs().sum() == 0  # channels beyond the active width get no gradient
    block = net.stages[1][1]  # second block of stage 2, inactive at depth 1
    assert all(p.grad is None for p in block.parameters())


def test_set_active_rejects_foreign_arch(supernets, alphanet):
    with pytest.raises(ArchError, match="not in space 'mini'"):
        supernets["mini", "saliency"].set_active(alphanet.min())


def test_build_block_matches_signature(mini):
    """Each block the latency table would measure has the signature's params and output shape."""
    for arch in _archs(mini, n=5):
        for sig in mini.block_signatures(arch):
            block = build_block(sig).eval()
            assert sum(p.numel() for p in block.parameters()) == sig.params()
            x = torch.randn(1, sig.cin, sig.h, sig.w)
            with torch.no_grad():
                if sig.op in ("dec", "saldec"):
                    skip = torch.randn(1, sig.skip, sig.h, sig.w) if sig.skip else None
                    y = block(x, skip, (sig.out_h, sig.out_w))
                else:
                    y = block(x)
            assert y.shape == (1, sig.cout, sig.out_h, sig.out_w)


def test_recalibrate_bn_is_cumulative_average(supernets, mini):
    """After recalibration each BN holds the equal-weight average of the per-batch statistics."""
    sub = supernets["mini", "saliency"].extract(mini.min()).eval()
    batches = [_input(mini.min(), batch=4, seed=s) for s in range(3)]
    with torch.no_grad():
        stem_out = [sub.stem.conv(b) for b in batches]
    assert recalibrate_bn(sub, batches) == 3
    assert not sub.training
    means = torch.stack([o.mean((0, 2, 3)) for o in stem_out]).mean(0)
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in stem_out]).mean(0)
    torch.testing.assert_close(sub.stem.bn.running_mean, means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sub.stem.bn.running_var, variances, rtol=1e-4, atol=1e-6)
    assert sub.stem.bn.momentum == 0.1  # restored


def test_recalibrate_bn_on_supernet_matches_extracted(mini):
    torch.manual_seed(1)
    net = Supernet(mini, task="saliency")
    arch = mini.sample(np.random.default_rng(3))
    net.set_active(arch)
    batches = [_input(arch, batch=4, seed=s) for s in range(2)]
    sub = net.extract(arch)
    recalibrate_bn(net, batches)
    recalibrate_bn(sub, batches)
    x = _input(arch, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), sub.eval()(x), rtol=0, atol=1e-5)


def test_recalibrate_bn_needs_data(mini):
    with pytest.raises(HwnasError, match="at least one batch"):
        recalibrate_bn(Supernet(mini), [])


def test_regularisation_of_the_largest_subnet_as_alphanet_does_it(mini):
    """Drop-connect at rate x i / n in the last two stages' identity-shortcut blocks (AttentiveNAS
    `set_dropout_rate`), dropout before the map's conv; in training mode only, undone on exit."""
    net = Supernet(mini, task="saliency")
    net.set_active(mini.max())
    with net.regularized(dropout=0.0, drop_connect=0.2):
        # mini's stages hold 1, 2, 2, 2, 3, 2, 1 blocks: the last two stages are blocks 10-12 of 13
        assert net._drop_rates() == [0.0] * 10 + [0.2 * 10 / 13, 0.2 * 11 / 13, 0.2 * 12 / 13]
    x = _input(mini.max(), batch=4)
    torch.manual_seed(0)
    plain = net.train()(x)
    with net.regularized(dropout=0.5, drop_connect=0.9):
        assert not torch.allclose(net(x), plain)
        with torch.no_grad():
            assert torch.equal(net.eval()(x), net(x))  # eval: nothing dropped
    assert torch.allclose(net.train()(x), plain) and net._drop_rates() == [0.0] * 13
