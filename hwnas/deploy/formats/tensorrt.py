"""TensorRT: a serialized engine built from the ONNX on an NVIDIA GPU (TensorRT 10 or 11).

Without a GPU here, the export does not fail: it writes the ONNX and a `.trtexec.txt` with the
exact `trtexec` lines that build the engine on the target (TensorRT 10 sets FP16 by a builder
flag; TensorRT 11 networks are strongly typed, so FP16 comes from a float16 ONNX, written here
when onnxconverter-common is installed), and the report says "not verified here". At int8 the
ONNX is the symmetric QDQ model calibrated on the export's images, built strongly typed; on a GPU
the engine inspector's per-layer datatypes go in the manifest and any fallback from int8 is noted.
"""

from __future__ import annotations

from pathlib import Path

from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.deploy.formats.onnx import int8_onnx, onnx_model, tools
from hwnas.errors import HwnasError
from hwnas.files import atomic_write_bytes
from hwnas.hardware.backends import Runnable
from hwnas.hardware.backends.base import Artifact
from hwnas.hardware.backends.tensorrt import (
    TensorrtRunnable,
    build_engine,
    fp16_onnx,
    inspect_engine,
    layer_precisions,
    trtexec_command,
)
from hwnas.hardware.device import Device


class TensorrtFormat(Format):
    name = "tensorrt"
    backend = "tensorrt"
    default_device = "rtx4090"
    suffix = ".engine"

    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        if device.precision == "int8":  # explicit quantization: the symmetric QDQ graph
            data, info, shared_notes = int8_onnx(job, symmetric=True), {"quantization": "QDQ, symmetric int8"}, []
        else:
            data, info, shared_notes = onnx_model(job)
        notes = list(shared_notes)
        reason = device.availability()
        if reason is None:
            import tensorrt

            engine = atomic_write_bytes(folder / self.filename(name), build_engine(data, device.precision))
            versions = {**tools(), "tensorrt": tensorrt.__version__}
            info = {**info, "precision": device.precision}
            if device.precision == "int8":
                layers = layer_precisions(inspect_engine(engine.read_bytes()))
                info["layer_precisions"] = {"counts": layers.counts, "compute": layers.compute,
                                            "fallbacks": list(layers.fallbacks)}  # fmt: skip
                notes.append(f"engine inspector: {layers.line()}")
            return Written([engine], versions, info, notes)
        # at int8 TensorRT's symmetric QDQ graph differs from the onnx format's (uint8 activations)
        stem = f"{name}.int8-symmetric" if device.precision == "int8" else name
        onnx_path = atomic_write_bytes(folder / f"{stem}.onnx", data)
        paths, lines = [onnx_path], [f"# build the {device.name} engine on the target, in this folder:"]
        lines += ["# TensorRT 10", trtexec_command(onnx_path.name, self.filename(name), device.precision, "10")]
        onnx_11: str | None = onnx_path.name
        if device.precision == "fp16":
            try:
                onnx_11 = atomic_write_bytes(folder / f"{name}.fp16.onnx", fp16_onnx(data)).name
                paths.append(folder / onnx_11)
            except HwnasError:
                notes.append("onnxconverter-common is not installed: no float16 ONNX for TensorRT 11 written")
                onnx_11 = None
        lines.append("# TensorRT 11 (strongly typed)")
        lines.append(
            trtexec_command(onnx_11, self.filename(name), device.precision, "11")
            if onnx_11 is not None
            else "# needs a float16 ONNX: pip install onnxconverter-common, then rerun hwnas export"
        )
        commands = atomic_write_bytes(folder / f"{name}.trtexec.txt", ("\n".join(lines) + "\n").encode())
        notes.append(f"engine not built here ({reason}); {commands.name} has the trtexec lines for the target")
        info = {**info, "precision": device.precision, "trtexec": lines[2], "trtexec_11": lines[-1]}
        return Written([commands, *paths], tools(), info, notes, verifiable=False)

    def load(self, written: Written, device: Device, job: Job) -> tuple[Runnable, Artifact]:
        artifact = Artifact(written.artifact.read_bytes(), (job.input_shape,))
        return TensorrtRunnable(artifact.payload, artifact.input_shapes), artifact
