"""Export: a trained `mini` supernet's subnet to onnx, tflite, coreml and tensorrt with the real
converters; onnx and tflite re-run on their runtimes here and compared with PyTorch; the Core ML
package read back with coremltools (its predictions need macOS); TensorRT without a GPU writes the
ONNX and the trtexec lines. Bad inputs leave nothing half-written."""

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import hwnas
from hwnas.deploy.formats.coreml import conv_count, load_package, package_summary
from hwnas.errors import HwnasError
from hwnas.nn.checkpoint import file_digest
from hwnas.search.accuracy import SupernetEvaluator
from hwnas.train.evaluation import score
from hwnas.train.task import make_task
from tests.cli import one_error_line, run_cli


@pytest.fixture(scope="module")
def mini32(mini):
    """A random `mini` arch at 32x32, the resolution the session's table was profiled at."""
    from dataclasses import replace

    return replace(mini.sample(np.random.default_rng(3)), resolution=(32, 32))


@pytest.fixture(scope="module")
def exported(mini_run, mini, mini32, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    arch_file = root / "best.json"
    arch_file.write_text(json.dumps(mini.arch_to_dict(mini32)))
    out = root / "export"
    proc = run_cli(
        "export", "--supernet", str(mini_run["ckpt"]), "--arch", str(arch_file),
        "--format", "onnx,tflite,coreml,tensorrt", "--device", "cpu", "--lut", str(mini_run["lut"]),
        "--out", str(out), "--rounds", "1",
    )  # fmt: skip
    return {"out": out, "stdout": proc.stdout, "arch_file": arch_file}


def _manifest(exported, fmt: str) -> dict:
    return json.loads((exported["out"] / f"mini-best.{fmt}.json").read_text())


def _reference(mini_run, mini, arch):
    """The subnet exactly as `hwnas search` scores it: its evaluator's supernet, data and BN batches."""
    from hwnas.train.bn import recalibrated_subnet

    evaluator = SupernetEvaluator(mini_run["ckpt"], mini)
    net = recalibrated_subnet(evaluator.model, evaluator.data, arch, bn_batches=evaluator.bn_batches)
    return net, evaluator


@pytest.mark.slow
def test_onnx_artifact_scores_what_the_search_scored(exported, mini_run, mini, mini32):
    net, evaluator = _reference(mini_run, mini, mini32)
    session = ort.InferenceSession(str(exported["out"] / "mini-best.onnx"), providers=["CPUExecutionProvider"])
    val = evaluator.data.split("val", mini32.resolution)
    batches = [evaluator.data.batch(val, [i]) for i in range(len(val))]
    outputs = [torch.from_numpy(session.run(None, {"input0": b["image"].numpy()})[0]) for b in batches]
    with torch.no_grad():
        expected = torch.cat([net(b["image"]) for b in batches])
    assert float((torch.cat(outputs) - expected).abs().max()) < 1e-4
    cc = score(make_task("saliency"), evaluator.data, torch.cat(outputs), resolution=mini32.resolution)["cc"]
    assert cc == pytest.approx(evaluator(mini32), abs=1e-4)


@pytest.mark.slow
def test_tflite_artifact_matches_pytorch(exported, mini_run, mini, mini32):
    from ai_edge_litert.interpreter import Interpreter

    net, _ = _reference(mini_run, mini, mini32)
    interpreter = Interpreter(model_path=str(exported["out"] / "mini-best.tflite"))
    interpreter.allocate_tensors()
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (1, 1, 32, 32)
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.slow
def test_verified_formats_report_numerics_and_latency_beside_the_table(exported, mini_run, mini32):
    for fmt in ("onnx", "tflite"):
        m = _manifest(exported, fmt)
        assert m["verification"]["status"] == "verified"
        assert m["verification"]["numerics"]["passed"] and m["verification"]["numerics"]["max_abs"] < 1e-4
        assert m["verification"]["speed"]["measured_ms"] > 0
        assert m["checkpoint"]["sha256"] == file_digest(mini_run["ckpt"])
        assert m["arch_line"] == str(mini32)
        assert m["input"] == {"name": m["input"]["name"], "shape": [1, 3, 32, 32], "layout": "NCHW", "dtype": "float32"}
        assert (m["input"]["name"], m["output"]["name"]) == _tensor_names(exported["out"] / m["artifact"])
        assert m["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    speed = _manifest(exported, "onnx")["verification"]["speed"]
    assert speed["table_ms"] > 0 and speed["line"].startswith("table ")
    shown = f"{speed['measured_ms']:.3f} ms │ {speed['table_ms']:.3f} {speed['delta_pct']:+.0f}%"
    assert shown in exported["stdout"]  # the row of the printed table: measured, then the table's figure
    assert "onnxruntime" in _manifest(exported, "onnx")["tools"]
    assert "litert-torch" in _manifest(exported, "tflite")["tools"]
    assert "no table at" in _manifest(exported, "tflite")["verification"]["speed"]["table"]


@pytest.mark.slow
def test_coreml_package_reads_back_with_its_input_and_one_conv_per_convolution(exported, mini_run, mini, mini32):
    net, _ = _reference(mini_run, mini, mini32)
    summary = package_summary(load_package(exported["out"] / "mini-best.mlpackage"))
    assert summary["inputs"] == {"input0": [1, 3, 32, 32]}
    assert summary["outputs"] == ["output0"]
    assert summary["ops"]["conv"] == conv_count(net) > 10
    m = _manifest(exported, "coreml")
    assert m["verification"]["status"] == "not verified here" and m["verification"]["reason"]
    assert m["target"]["compute_units"] == "ALL" and m["details"]["precision"] == "fp16"


@pytest.mark.slow
def test_tensorrt_without_a_gpu_writes_the_onnx_and_the_trtexec_line(exported):
    out = exported["out"]
    lines = (out / "mini-best.trtexec.txt").read_text().splitlines()
    assert "trtexec --onnx=mini-best.onnx --saveEngine=mini-best.engine --fp16 --memPoolSize=workspace:1024M" in lines
    eleven = lines[lines.index("# TensorRT 11 (strongly typed)") + 1]
    assert "--stronglyTyped" in eleven or "pip install onnxconverter-common" in eleven
    for line in lines:  # every file a trtexec line reads was written
        for onnx_name in re.findall(r"--onnx=(\S+)", line):
            assert (out / onnx_name).is_file(), line
    onnx.checker.check_model(onnx.load(out / "mini-best.onnx"), full_check=True)
    m = _manifest(exported, "tensorrt")
    assert m["verification"]["status"] == "not verified here" and "engine not built here" in m["verification"]["reason"]
    assert not (out / "mini-best.engine").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files or staging folders left


@pytest.mark.slow
def test_python_api_exports_a_subnet_checkpoint_without_an_arch(tmp_path, mini):
    from hwnas.nn.checkpoint import save_checkpoint
    from hwnas.nn.supernet import build_subnet

    arch = mini.min()
    ckpt = save_checkpoint(
        tmp_path / "sub.pt",
        {"kind": "subnet", "task": "saliency", "num_classes": 1, "space_toml": mini.toml, "epoch": 3,
         "arch": mini.arch_to_dict(arch), "model": build_subnet(mini, arch).state_dict()},
    )  # fmt: skip
    report = hwnas.export(ckpt, formats=["onnx"], out=tmp_path / "out", verify=False)
    (item,) = report.items
    assert item.paths == [tmp_path / "out" / "mini-subnet.onnx"] and item.paths[0].is_file()
    assert item.verification.status == "not verified here" and "--no-verify" in item.verification.reason
    assert report.source.bn == "the subnet checkpoint's own statistics"
    with pytest.raises(HwnasError, match="holds the single subnet"):
        hwnas.export(ckpt, "max", out=tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_a_failing_conversion_leaves_earlier_artifacts_whole_and_no_partial_file(tmp_path, mini_run, monkeypatch):
    import hwnas.deploy.formats.coreml as coreml_format

    def broken(model):  # the package was saved to its staging folder; reading it back fails
        raise HwnasError("simulated failure while checking the Core ML package")

    monkeypatch.setattr(coreml_format, "package_summary", broken)
    out = tmp_path / "out"
    with pytest.raises(HwnasError, match="simulated"):
        hwnas.export(mini_run["ckpt"], "min", formats="onnx,coreml", out=out, verify=False)
    assert sorted(p.name for p in out.iterdir()) == ["mini-min.onnx", "mini-min.onnx.json"]
    onnx.checker.check_model(onnx.load(out / "mini-min.onnx"), full_check=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "ARCH_OTHER"], "does not fit the checkpoint's space 'mini'"),
        (["--arch", "min", "--format", "onnx,pdf"], "unknown export format(s) pdf; allowed: onnx, tflite, coreml"),
        (["--arch", "min", "--device", "m2", "--format", "onnx"], "--device m2 is not a target of --format onnx"),
        (["--arch", "min", "--out", "A_FILE"], "is a file"),
        (["--arch", "min", "--out", "A_FILE/sub"], "is not writable"),
        ([], "holds a supernet: pass --arch"),
        (["--arch", "min", "--opset", "3"], "--opset must be between 7 and 23"),
        (["--arch", "min", "--format", "onnx,tflite", "--lut", "x.parquet"], "--lut names one table"),
        (["--arch", "min", "--name", "../up"], "--name must be a plain file name"),
        (["--arch", "min", "--format", "tflite", "--precision", "fp16"], "precision fp16 is not built by tflite"),
        (["--arch", "min", "--precision", "int8", "--calibration", "EMPTY"], "has no images (.jpg, .jpeg, .png)"),
        (["--arch", "min", "--precision", "int8", "--max-drop", "acc=0.1"], "with METRIC one of this task's: auc_judd"),
        (["--arch", "min", "--max-drop", "cc=0.1"], "--max-drop judges a quantized artifact"),
        (["--arch", "min", "--precision", "int4"], "unknown --precision 'int4'; allowed: fp32, fp16, int8"),
    ],
)
def test_bad_export_inputs_are_one_line_and_write_nothing(tmp_path, mini_run, alphanet, args, message):
    other = tmp_path / "alphanet-max.json"
    other.write_text(json.dumps(alphanet.arch_to_dict(alphanet.max())))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    args = [str(other) if a == "ARCH_OTHER" else a.replace("A_FILE", str(a_file)) for a in args]
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    out = tmp_path / "out"
    full = ["export", "--supernet", str(mini_run["ckpt"]), *args]
    if "--out" not in args:
        full += ["--out", str(out)]
    line = one_error_line(run_cli(*full, check=False))
    assert message in line
    assert not out.exists()
    assert a_file.read_text() == "not a folder"


@pytest.mark.slow
def test_missing_or_foreign_checkpoint_is_one_line(tmp_path):
    out = str(tmp_path / "export")
    line = one_error_line(
        run_cli("export", "--supernet", str(tmp_path / "none.pt"), "--arch", "min", "-o", out, check=False)
    )
    assert "does not exist" in line
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    line = one_error_line(run_cli("export", "--supernet", str(foreign), "--arch", "min", "-o", out, check=False))
    assert "not an hwnas checkpoint" in line
    assert not (tmp_path / "export").exists()


def _tensor_names(path):
    """(input, output) names as the runtime reads them from the file: what a user must feed."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        signature = Interpreter(model_path=str(path)).get_signature_list()["serving_default"]
        return signature["inputs"][0], signature["outputs"][0]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_inputs()[0].name, session.get_outputs()[0].name
