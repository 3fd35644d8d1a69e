"""Backends and the shared measurement protocol.

ONNX Runtime, LiteRT and torch run for real here. Core ML converts here but predicts only on
macOS. TensorRT needs an NVIDIA GPU: only its build plan (the TensorRT 10 vs 11 branch) and its
refusal without a GPU are tested here; engine building and execution run only on a GPU host.
"""

from __future__ import annotations

import dataclasses
import itertools
import platform

import numpy as np
import pytest
import torch

from hwnas.hardware.backends import Protocol, get_backend, measure
from hwnas.hardware.backends.tensorrt import BuildPlan, build_plan
from hwnas.hardware.device import DeviceError, load_device, packaged_dir
from hwnas.nn.static import SignatureModel, signature_inputs
from hwnas.space.signature import BlockSignature

DEVICES = packaged_dir()
SIGS = [
    BlockSignature("mbconv", 16, 16, 16, 24, 5, 2, 4, True, "swish", out_h=8, out_w=8),
    BlockSignature("dec", 8, 8, 24, 16, 3, act="swish", skip=24, out_h=16, out_w=16),
]
FAST = Protocol(warmup_min_calls=3, warmup_min_s=0.0, warmup_max_s=0.2, window=3, runs=5, min_run_s=0.0)


def _reference(model, inputs):
    with torch.no_grad():
        return model(*[torch.from_numpy(x) for x in inputs]).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "cpu-tflite", "cpu-torch"])
def test_runtime_matches_torch_and_measures(device):
    backend = get_backend(load_device(device, DEVICES))
    for sig in SIGS:
        model = SignatureModel(sig).eval()
        runnable = backend.compile(model, signature_inputs(sig))
        rng = np.random.default_rng(1)
        inputs = [rng.standard_normal(shape).astype(np.float32) for shape in signature_inputs(sig)]  # NCHW, real
        (out,) = runnable.run(inputs)
        np.testing.assert_allclose(out, _reference(model, inputs), atol=1e-4, rtol=1e-4)
        timing = runnable.measure(FAST)
        assert timing.n >= 5 and 0 < timing.min_ms <= timing.median_ms <= timing.p90_ms
    assert backend.versions()["torch"] == torch.__version__


@pytest.mark.slow
def test_litert_blocks_pay_no_layout_transposes_at_their_edges():
    """A block measured for a LiteRT table takes and returns NHWC, as between the blocks of a whole
    model: no TRANSPOSE op in it (with NCHW edges it had two, and block sums were 1.15x the whole)."""
    import collections

    from ai_edge_litert.interpreter import Interpreter

    sig = SIGS[0]
    artifact = get_backend(load_device("cpu-tflite", DEVICES)).prepare(
        SignatureModel(sig).eval(), signature_inputs(sig)
    )
    ops = collections.Counter(op["op_name"] for op in Interpreter(model_content=artifact.payload)._get_ops_details())
    assert artifact.channels_last and ops["CONV_2D"] >= 2 and ops["TRANSPOSE"] == 0


@pytest.mark.slow
def test_coreml_converts_here_but_predicts_only_on_macos():
    backend = get_backend(load_device("m2", DEVICES))
    runnable = backend.compile(SignatureModel(SIGS[0]).eval(), signature_inputs(SIGS[0]))
    spec = runnable.model.get_spec()
    assert spec.description.input[0].name == "input0"
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 16, 16, 16]
    if platform.system() != "Darwin":
        with pytest.raises(DeviceError, match="need macOS; run `hwnas agent` on the Mac"):
            runnable.run(runnable.example_inputs())


def test_tensorrt_build_plan_10_vs_11():
    """TensorRT 10 uses the FP16 builder flag; 11 removed it: strongly typed network, FP16 ONNX."""
    assert build_plan("fp16", "10.13.0") == BuildPlan(("FP16",), False, False)
    assert build_plan("fp32", "10.13.0") == BuildPlan((), False, False)
    assert build_plan("fp16", "11.4.0") == BuildPlan((), True, True)
    assert build_plan("fp32", "11.4.0") == BuildPlan((), True, False)
    with pytest.raises(DeviceError, match="needs TensorRT 10 or 11"):
        build_plan("fp16", "8.6.1")


@pytest.mark.skipif(load_device("rtx4090", DEVICES).availability() is None, reason="a GPU with TensorRT is present")
def test_tensorrt_refuses_without_gpu():
    device = load_device("rtx4090", DEVICES)
    with pytest.raises(DeviceError, match="cannot run on this host"):
        get_backend(device).compile(SignatureModel(SIGS[0]), signature_inputs(SIGS[0]))


def _scripted(values_ms):
    """A timer that returns scripted durations: the protocol's statistics by hand."""
    it = itertools.cycle([int(v * 1e6) for v in values_ms])
    return lambda: next(it)


def test_measure_statistics_by_hand():
    protocol = Protocol(warmup_min_calls=2, warmup_min_s=0.0, window=2, runs=10, min_run_s=0.0)
    timing = measure(lambda: None, protocol, timer=_scripted([2.0]))
    assert (timing.median_ms, timing.p90_ms, timing.min_ms, timing.cv, timing.n) == (2.0, 2.0, 2.0, 0.0, 10)
    assert not timing.noisy and timing.attempts == 1


def test_noisy_entry_is_remeasured_then_flagged():
    protocol = Protocol(
        warmup_min_calls=2,
        warmup_min_s=0.0,
        warmup_max_s=0.05,
        window=2,
        runs=30,
        min_run_s=0.0,
        cv_threshold=0.1,
        retries=2,
    )
    timing = measure(lambda: None, protocol, timer=_scripted([1.0, 3.0]))
    assert timing.attempts == 1  # best (lowest-CV) attempt kept; all three were noisy
    assert timing.noisy
    assert timing.median_ms == 2.0 and timing.p90_ms == 3.0 and timing.min_ms == 1.0
    assert timing.cv == pytest.approx(np.sqrt(30 / 29) / 2)


def test_warm_up_waits_for_stable_times():
    """A call whose first 40 calls run slow (caches, allocator, thread pool) is timed only once settled."""
    values = [1.0 + 2.0 * 0.9**i for i in range(40)] + [1.0] * 1000
    it = iter(int(v * 1e6) for v in values)
    protocol = Protocol(warmup_min_calls=2, warmup_min_s=0.0, warmup_max_s=5.0, window=5, runs=10, min_run_s=0.0)
    timing = measure(lambda: None, protocol, timer=lambda: next(it))
    # the first call took 3 ms and a fixed 10-call warm-up would still see 1.7 ms; the protocol
    # stops warming up once consecutive windows agree within stable_tol (5%)
    assert 1.0 <= timing.median_ms < 1.05


@pytest.mark.slow
def test_litert_converts_in_worker_processes_in_order_and_to_the_same_numbers():
    """`prepare_many` with a conversion pool: each flatbuffer (BN folded, made in a spawned process)
    belongs to its own model and reproduces it; a pool is used only for a slow backend."""
    from hwnas.hardware.backends.base import conversion_pool
    from hwnas.nn.blocks import ConvBnAct

    backend = get_backend(load_device("cpu-tflite", DEVICES))
    models = []
    for cout in (8, 12, 16, 20):
        torch.manual_seed(cout)
        model = ConvBnAct(8, cout, 3, act="swish").eval()
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        models.append(model)
    pool = conversion_pool(2)
    try:
        artifacts = list(backend.prepare_many([(m, [(1, 8, 8, 8)]) for m in models], pool=pool))
    finally:
        pool.shutdown()
    for model, artifact in zip(models, artifacts, strict=True):
        runnable = backend.load(artifact)
        inputs = [np.random.default_rng(2).standard_normal((1, 8, 8, 8)).astype(np.float32)]  # NCHW, real
        (out,) = runnable.run(inputs)
        np.testing.assert_allclose(out, _reference(model, inputs), atol=1e-4, rtol=1e-4)
    assert get_backend(load_device("cpu", DEVICES)).slow_prepare is False and backend.slow_prepare is True


def test_one_slow_call_does_not_make_a_block_noisy():
    """Timings of tiny blocks are heavy-tailed: one interrupted call among a hundred doubles their
    plain CV, so the classic criterion re-measured nearly every block for nothing (issue 33)."""
    protocol = Protocol(warmup_min_calls=2, warmup_min_s=0.0, window=2, runs=100, min_run_s=0.0, retries=1)
    script = [1.0] * 99 + [100.0]
    robust = measure(lambda: None, protocol, timer=_scripted(script))
    assert not robust.noisy and robust.attempts == 1 and robust.median_ms == 1.0
    assert robust.cv > 0.1  # the plain CV is still reported as measured
    classic = measure(lambda: None, dataclasses.replace(protocol, robust_cv=False), timer=_scripted(script))
    assert classic.noisy
