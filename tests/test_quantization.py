"""Int8 through the backends: each quantized path round-trips a block and a subnet (runs, right
shapes, outputs close to fp32 within the stated int8 tolerance), block models take and return
integers, precisions a backend does not build are refused in one line, a table of another precision
is refused, and TensorRT's engine inspection is read from its inspector's JSON.

ONNX Runtime's QDQ kernels and LiteRT's XNNPACK int8 kernels run for real here. TensorRT needs a
GPU: its int8 build plan and its inspector reading are tested, on a hand-written inspector output
(tests/data/tensorrt/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.deploy.formats.base import TOLERANCES
from hwnas.hardware.backends import get_backend
from hwnas.hardware.backends.base import Quantized
from hwnas.hardware.backends.tensorrt import BuildPlan, build_plan, layer_precisions
from hwnas.hardware.device import DeviceError, load_device, packaged_dir, parse_device
from hwnas.hardware.table import LatencyTable, LutError
from hwnas.nn.factory import create
from hwnas.nn.static import SignatureModel, signature_inputs
from hwnas.space import SearchSpace
from hwnas.space.signature import BlockSignature

DEVICES = packaged_dir()
DATA = Path(__file__).parent / "data" / "tensorrt"
BLOCK = BlockSignature("mbconv", 16, 16, 16, 24, 5, 2, 4, True, "swish", out_h=8, out_w=8)
DECODER = BlockSignature("dec", 8, 8, 24, 16, 3, act="swish", skip=24, out_h=16, out_w=16)


def _close_to_fp32(runnable, model, shapes) -> None:
    """The int8 model's real-valued outputs against fp32 torch on seeded inputs: every element within
    the int8 tolerance (a quarter of the output's range, `TOLERANCES['int8']`), the mean difference
    within 1% of it, and correlated above 0.99."""
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    (got,) = runnable.run(inputs)
    with torch.no_grad():
        expected = model(*[torch.from_numpy(x) for x in inputs]).numpy()
    assert got.shape == expected.shape and got.dtype == np.float32
    difference = np.abs(got - expected)
    assert np.all(difference <= TOLERANCES["int8"].bound(expected))
    assert difference.mean() <= 0.01 * (expected.max() - expected.min())
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99
    assert not np.array_equal(got, expected)  # it did run quantized


def _integer_io(runnable) -> None:
    """A table's block model takes and returns integers, with the scale each stands for."""
    assert all(isinstance(q, Quantized) for q in runnable.input_quant + runnable.output_quant)
    for x, q in zip(runnable.example_inputs(), runnable.input_quant, strict=True):
        assert x.dtype == np.dtype(q.dtype)


@pytest.mark.parametrize("device", ["cpu-int8", pytest.param("cpu-tflite-int8", marks=pytest.mark.slow)])
def test_an_int8_block_round_trips_with_integer_io(device):
    backend = get_backend(load_device(device, DEVICES))
    for seed, sig in enumerate((BLOCK, DECODER)):
        torch.manual_seed(seed)
        model = SignatureModel(sig).eval()
        runnable = backend.compile(model, signature_inputs(sig))
        _integer_io(runnable)
        _close_to_fp32(runnable, model, signature_inputs(sig))
        assert runnable.measure().median_ms > 0


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu-int8", "cpu-tflite-int8"])
def test_an_int8_subnet_round_trips(device):
    """A whole mini subnet (the segmentation head: logits with a range to compare)."""
    space = SearchSpace.load("mini")
    arch = space.max()
    w, h = arch.resolution
    model = create(space, arch=arch, task="segmentation", seed=0).eval()
    runnable = get_backend(load_device(device, DEVICES)).compile(model, [(1, 3, h, w)])
    _close_to_fp32(runnable, model, [(1, 3, h, w)])


def test_core_ml_int8_is_w8a8_converted_from_the_simulated_graph():
    """Core ML int8 (no predictions here: macOS): the graph converted computes what `simulated_int8`
    computes, and the package holds every convolution's weights as int8 constants and quantized
    activations."""
    from hwnas.deploy.formats.coreml import package_summary
    from hwnas.hardware.backends.coreml import w8a8
    from hwnas.nn.quantize import SCHEMES, simulated_int8

    torch.manual_seed(0)
    model = SignatureModel(BLOCK).eval()
    shapes = signature_inputs(BLOCK)
    calibration = [[np.random.default_rng(i).standard_normal(shapes[0]).astype(np.float32)] for i in range(4)]
    graph = w8a8(model, calibration)
    fake = simulated_int8(model, [torch.from_numpy(c[0]) for c in calibration], SCHEMES["coreml"])
    x = torch.from_numpy(calibration[0][0])
    with torch.no_grad():
        explicit, simulated, fp32 = graph(x).numpy(), fake(x).numpy(), model(x).numpy()
    scale = fp32.max() - fp32.min()
    assert np.abs(explicit - simulated).mean() < 1e-3 * scale  # equal but for rounding ties
    assert np.all(np.abs(explicit - fp32) <= TOLERANCES["int8"].bound(fp32)) and not np.array_equal(explicit, fp32)
    from hwnas.nn.quantize import _grid

    # coremltools' symmetric scheme: a never-negative tensor is uint8 with zero point 0, others int8
    scale, *rest = _grid(0.0, 2.55, SCHEMES["coreml"])
    signed_scale, *signed_rest = _grid(-1.0, 2.54, SCHEMES["coreml"])
    assert scale == pytest.approx(0.01) and rest == [0, 0, 255, "uint8"]
    assert signed_scale == pytest.approx(0.02) and signed_rest == [0, -127, 127, "int8"]
    artifact = get_backend(load_device("m2-int8", DEVICES)).prepare(model, shapes)
    ops = package_summary(artifact.payload)["ops"]
    convolutions = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert ops["conv"] == ops["constexpr_affine_dequantize"] == convolutions
    assert ops["quantize"] >= convolutions and ops["dequantize"] >= convolutions


def test_quantized_round_trip_by_hand():
    q = Quantized("uint8", 0.5, 10)
    assert q.quantize(np.array([0.0, 1.0, -5.0, -6.0, 200.0])).tolist() == [10, 12, 0, 0, 255]
    assert q.dequantize(np.array([10, 12, 0], dtype=np.uint8)).tolist() == [0.0, 1.0, -5.0]


def test_precisions_a_backend_does_not_build_are_refused_in_one_line():
    with pytest.raises(DeviceError, match=r"precision fp16 is not built by onnxruntime with CPUExecutionProvider; "
                                          r"it builds: fp32, int8"):  # fmt: skip
        load_device("cpu", DEVICES).at_precision("fp16")
    with pytest.raises(DeviceError, match="precision int8 is not built by torch; it builds: fp32"):
        load_device("cpu-torch", DEVICES).at_precision("int8")
    with pytest.raises(DeviceError, match="precision fp16 is not built by tflite; it builds: fp32, int8"):
        load_device("cpu-tflite", DEVICES).at_precision("fp16")
    text = 'name = "x"\nbackend = "tflite"\n[options]\nprecision = "fp16"\n'
    with pytest.raises(DeviceError, match="^x.toml: precision fp16 is not built by tflite; it builds: fp32, int8$"):
        parse_device(text, source="x.toml")
    assert load_device("ascend310", DEVICES).precision == "fp16"  # CANN's own fp16
    int8 = load_device("cpu", DEVICES).at_precision("int8")
    assert (int8.name, int8.precision) == ("cpu-int8", "int8")
    assert load_device("cpu-int8", DEVICES).options() == int8.options()


def test_a_table_of_another_precision_is_refused(tmp_path):
    from hwnas.hardware.backends.base import Timing

    space = SearchSpace.load("mini")
    fp32 = load_device("cpu", DEVICES)
    table = LatencyTable.new(
        device={"name": "cpu-int8", "backend": "onnxruntime", **fp32.options()}, versions={}, space=space,
        task="saliency", resolutions=list(space.resolutions), overhead=Timing(0.01, 0.01, 0.01, 0.01, 0.0, 1),
        protocol={},
    )  # fmt: skip
    assert table.precision == "fp32"
    table.require_precision("fp32", "t.parquet")
    with pytest.raises(LutError, match="latency table t.parquet was measured at fp32, but the device runs int8"):
        table.require_precision("int8", "t.parquet")
    path = table.save(tmp_path / "cpu-int8-mini.parquet")
    from hwnas.search.runner import _supernet_setup

    with pytest.raises(LutError, match="measured at fp32, but the device runs int8"):
        _supernet_setup(["cpu-int8"], "mini", None, "flops", [str(path)], None, None)


def test_tensorrt_int8_is_explicit_quantization():
    """int8 engines come from a QDQ graph, strongly typed and without precision flags, on 10 and 11."""
    assert build_plan("int8", "10.13.0") == BuildPlan((), True, False)
    assert build_plan("int8", "11.4.0") == BuildPlan((), True, False)
    with pytest.raises(DeviceError, match="needs TensorRT 10 or 11"):
        build_plan("int8", "8.6.1")


def test_tensorrt_inspector_names_the_layers_that_fell_back_from_int8():
    info = json.loads((DATA / "inspector_int8.json").read_text())
    found = layer_precisions(info)
    assert found.counts == {"fp32": 3, "int8": 5}  # by each layer's first input
    assert found.compute == 5
    assert found.fallbacks == ("/blocks.0/se/reduce/Conv (fp32)", "/head/conv/Conv + /head/Sigmoid (fp32)")
    assert found.line().startswith("2 of 5 compute layers fell back from int8: /blocks.0/se/reduce/Conv (fp32)")
    with pytest.raises(DeviceError, match="detailed profiling verbosity"):
        layer_precisions({"Layers": ["conv0", "relu0"]})


@pytest.mark.slow
def test_int8_export_is_scored_by_the_task_metric_and_max_drop_fails_it(tmp_path, mini_run):
    """onnx and tflite at int8 from the session's trained mini supernet: the manifests carry the
    precision, the calibration, the task's scores beside fp32's and the runtimes' agreement; the same
    export calibrated on two grey images (every activation range wrong) drops CC past `--max-drop`,
    fails and says so."""
    from tests.cli import run_cli

    out = tmp_path / "int8"
    run_cli(
        "export", "--supernet", str(mini_run["ckpt"]), "--arch", "max",
        "--precision", "int8", "--calibration-images", "16", "--out", str(out), "--rounds", "1",
        "--max-drop", "cc=0.2", "--format", "onnx,tflite,tensorrt,coreml",
    )  # fmt: skip
    onnx_manifest = json.loads((out / "mini-max.onnx.json").read_text())
    tflite_manifest = json.loads((out / "mini-max.tflite.json").read_text())
    for manifest, device in ((onnx_manifest, "cpu-int8"), (tflite_manifest, "cpu-tflite-int8")):
        assert manifest["precision"] == "int8" and manifest["target"]["device"] == device
        assert manifest["calibration"] == {"data": "synthetic", "kind": "built-in", "images": 16}
        accuracy = manifest["accuracy"]
        assert set(accuracy["fp32"]) == set(accuracy["scores"]) >= {"cc", "kld", "nss", "sauc"}
        for metric in ("cc", "nss"):  # higher is better: the drop is fp32 minus the artifact's
            assert accuracy["drops"][metric] == pytest.approx(accuracy["fp32"][metric] - accuracy["scores"][metric])
        assert accuracy["drops"]["kld"] == pytest.approx(accuracy["scores"]["kld"] - accuracy["fp32"]["kld"])
        assert accuracy["drops"]["cc"] <= 0.2 and manifest["verification"]["status"] == "verified"
        assert manifest["agreement"]["onnx~tflite"]["pearson"] > 0.95
    assert tflite_manifest["input"]["dtype"] == "int8"
    assert set(tflite_manifest["input"]["quantization"]) == {"dtype", "scale", "zero_point"}
    import onnx

    ops = {n.op_type for n in onnx.load(out / "mini-max.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # without a GPU, TensorRT's input is the symmetric QDQ graph (int8 activations, zero point 0)
    # beside the onnx format's (uint8), and the engine is built strongly typed on the target
    trt = json.loads((out / "mini-max.tensorrt.json").read_text())
    assert trt["precision"] == "int8" and trt["verification"]["status"] == "not verified here"
    assert "--stronglyTyped" in trt["details"]["trtexec"] and "--int8" not in trt["details"]["trtexec"]
    from onnx import numpy_helper

    symmetric = onnx.load(out / "mini-max.int8-symmetric.onnx")
    zeros = [numpy_helper.to_array(i) for i in symmetric.graph.initializer if i.name.endswith("zero_point")]
    assert {z.dtype for z in zeros} == {np.dtype(np.int8), np.dtype(np.int32)}  # int32: the biases
    assert not any(z.any() for z in zeros)

    # Core ML runs on macOS only: its W8A8 package is scored in torch on the graph it was converted
    # from, says so, and stays out of the runtimes' agreement
    coreml = json.loads((out / "mini-max.coreml.json").read_text())
    assert coreml["precision"] == "int8" and coreml["target"]["device"] == "m2-int8"
    assert coreml["accuracy"]["drops"]["cc"] <= 0.2 and coreml["agreement"] == {}
    assert any("scores computed in torch" in note for note in coreml["notes"])
    assert coreml["details"]["ops"]["constexpr_affine_dequantize"] > 0

    grey = tmp_path / "grey"
    grey.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (40, 30), (128, 128, 128)).save(grey / f"g{i}.png")
    bad = tmp_path / "miscalibrated"
    proc = run_cli(
        "export", "--supernet", str(mini_run["ckpt"]), "--arch", "max", "--format", "onnx", "--precision", "int8",
        "--calibration", str(grey), "--out", str(bad), "--rounds", "1", "--max-drop", "cc=0.05", check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "verification failed for onnx" in proc.stderr
    manifest = json.loads((bad / "mini-max.onnx.json").read_text())
    assert manifest["calibration"] == {"data": str(grey), "kind": "images", "images": 2}
    assert manifest["verification"]["status"] == "failed"
    (exceeded,) = manifest["accuracy"]["exceeded"]
    assert exceeded.startswith("cc dropped ") and exceeded in manifest["verification"]["reason"]


@pytest.mark.parametrize("scheme", ["onnxruntime", "onnxruntime-symmetric"])
def test_simulated_int8_computes_what_onnx_runtimes_int8_convolution_computes(scheme):
    """`simulated_int8` (what `--quantized-accuracy` scores) against ONNX Runtime's QDQ model of the
    same convolution calibrated on the same inputs: equal to within one output step (a rounding
    tie), and on average within 5% of a step, where fp32 is off by a third of a step."""
    import onnxruntime

    from hwnas.hardware.backends.onnxruntime import OrtRunnable, quantize_onnx, to_onnx
    from hwnas.nn.quantize import SCHEMES, _affine, simulated_int8

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1)).eval()
    shape = (1, 8, 12, 12)
    rng = np.random.default_rng(0)
    calibration = [[rng.standard_normal(shape).astype(np.float32)] for _ in range(4)]
    model = quantize_onnx(to_onnx(net, [shape]), calibration, symmetric=scheme.endswith("symmetric"))
    runtime = OrtRunnable(onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]), [shape])
    images = torch.from_numpy(np.concatenate([c[0] for c in calibration]))
    sim = simulated_int8(net, [images], SCHEMES[scheme])
    with torch.no_grad():
        outputs = net(images)
        step, _ = _affine(float(outputs.min()), float(outputs.max()), SCHEMES[scheme])
        x = calibration[1][0]
        fp32, simulated = (m(torch.from_numpy(x)).numpy() for m in (net, sim))
    (int8,) = runtime.run([x])
    assert np.abs(simulated - int8).max() <= 1.001 * step
    assert np.abs(simulated - int8).mean() < 0.05 * step < np.abs(fp32 - int8).mean() / 4


def test_quantized_accuracy_needs_int8_devices_and_a_supernet():
    from hwnas.errors import HwnasError
    from hwnas.search import run

    with pytest.raises(HwnasError, match="--quantized-accuracy scores int8 models, but cpu is not an int8 device"):
        run(device="cpu", budgets=["1ms"], space="mini", proxy="flops", quantized_accuracy=True)
    with pytest.raises(HwnasError, match="quantize differently"):
        run(device=["cpu-int8", "cpu-tflite-int8"], budgets=["cpu-int8:1ms"], space="mini", proxy="flops",
            quantized_accuracy=True)  # fmt: skip


@pytest.mark.slow
def test_a_search_scores_the_simulated_int8_subnet(mini_run, mini):
    """The search's evaluator with int8 simulated (ONNX Runtime's CPU scheme): a score of the
    quantized subnet, near the fp32 one but not it, under an identity of its own (archives of the
    two never mix)."""
    from dataclasses import replace

    from hwnas.nn.quantize import SCHEMES
    from hwnas.search.accuracy import SupernetEvaluator

    arch = replace(mini.max(), resolution=(32, 32))
    fp32 = SupernetEvaluator(mini_run["ckpt"], mini)
    int8 = SupernetEvaluator(mini_run["ckpt"], mini, quantization=SCHEMES["onnxruntime"])
    a, b = fp32(arch), int8(arch)
    assert np.isfinite(b) and a != b and abs(a - b) < 0.1
    assert "int8 simulated (uint8 asymmetric activations)" in int8.identity and int8.identity != fp32.identity


@pytest.mark.slow
def test_report_on_an_int8_device_gives_the_int8_models_latency_size_and_accuracy_drop(mini_run):
    from hwnas.deploy.report import report

    fp32 = report("cpu", "max", supernet=mini_run["ckpt"], passes=2, batch=2, rounds=1)
    int8 = report("cpu-int8", "max", supernet=mini_run["ckpt"], passes=2, batch=2, rounds=1)
    assert int8.value("size") < 0.5 * fp32.value("size")  # int8 weights: a quarter of the bytes, and the graph
    assert int8.value("latency") > 0
    drop = next(m for m in int8.measures if m.name == "accuracy drop")
    accuracy = int8.details["accuracy"]
    assert drop.unit == "cc" and drop.value == pytest.approx(accuracy["fp32"]["cc"] - accuracy["scores"]["cc"])
    assert "onnx int8 on" in drop.source
    assert all(m.name != "accuracy drop" for m in fp32.measures)
