"""ONNX: torch.onnx's dynamo exporter (torch.export + onnxscript), `onnx.checker`, then onnxslim.

onnxslim (constant folding, dead-node and redundant-op removal, pure Python) is kept only when it
removes nodes and the result still passes the full checker; verification then runs the file that
was written on ONNX Runtime. At int8 the file is the QDQ model of the BN-folded subnet calibrated
on the export's images (`hwnas.hardware.backends.onnxruntime.quantize_onnx`), float in and out.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.errors import HwnasError
from hwnas.files import atomic_write_bytes
from hwnas.hardware.backends.onnxruntime import quantize_onnx, to_onnx
from hwnas.hardware.device import Device
from hwnas.nn.blocks import folded


def onnx_model(job: Job) -> tuple[bytes, dict, list[str]]:
    """The checked (and, where it helps, slimmed) ONNX of `job`, its node counts and notes; cached."""
    key = ("onnx", job.input_shape)
    if key not in job.cache:
        job.cache[key] = _build(job)
    return job.cache[key]


def _build(job: Job) -> tuple[bytes, dict, list[str]]:
    import onnx

    raw = to_onnx(job.subnet, [job.input_shape], exporter=job.exporter, opset=job.opset)
    model = onnx.load_from_string(raw)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise HwnasError(f"the exported ONNX graph is invalid ({str(exc).splitlines()[0]})") from None
    info = {"nodes_exported": len(model.graph.node), "opset": job.opset, "exporter": job.exporter}
    notes: list[str] = []
    try:
        import onnxslim
    except ImportError:
        return raw, {**info, "nodes": info["nodes_exported"]}, ["onnxslim is not installed: graph left as exported"]
    slim = onnxslim.slim(model)
    try:
        onnx.checker.check_model(slim, full_check=True)
        better = len(slim.graph.node) < len(model.graph.node)
    except onnx.checker.ValidationError:
        better = False
        notes.append("onnxslim produced an invalid graph: kept the exported one")
    if better:
        return slim.SerializeToString(), {**info, "nodes": len(slim.graph.node), "slimmed": True}, notes
    return raw, {**info, "nodes": len(model.graph.node), "slimmed": False}, notes


def int8_onnx(job: Job, *, symmetric: bool) -> bytes:
    """The QDQ int8 model of `job` (BN folded, calibrated on `job.calibration`, float I/O); cached.
    `symmetric`: int8 activations with zero point 0 (TensorRT), else uint8 (ONNX Runtime's CPU)."""
    key = ("int8", job.input_shape, symmetric)
    if key not in job.cache:
        raw = to_onnx(folded(job.subnet), [job.input_shape], exporter=job.exporter, opset=job.opset)
        job.cache[key] = quantize_onnx(raw, job.calibration_sets(), symmetric=symmetric)
    return job.cache[key]


def tools() -> dict[str, str]:
    found = {"torch": torch.__version__}
    for package in ("onnx", "onnxscript", "onnxslim", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


class OnnxFormat(Format):
    name = "onnx"
    backend = "onnxruntime"
    default_device = "cpu"
    suffix = ".onnx"

    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        if device.precision == "int8":
            symmetric = device.provider != "CPUExecutionProvider"
            path = atomic_write_bytes(folder / self.filename(name), int8_onnx(job, symmetric=symmetric))
            scheme = "QDQ, int8 per-channel weights, " + ("int8 symmetric" if symmetric else "uint8") + " activations"
            return Written([path], tools(), {"quantization": scheme, "exporter": job.exporter, "opset": job.opset})
        data, info, notes = onnx_model(job)
        path = atomic_write_bytes(folder / self.filename(name), data)
        return Written([path], tools(), dict(info), list(notes))
