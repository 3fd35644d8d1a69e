"""TFLite (LiteRT): litert-torch conversion to a flatbuffer, verified with the ai-edge-litert interpreter.

At int8 the flatbuffer is the full-integer model calibrated on the export's images
(`hwnas.hardware.backends.tflite.quantize_tflite`): it takes and returns int8, and the manifest
records the scale and zero point that convert the normalised image to its input and its output back.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.files import atomic_write_bytes
from hwnas.hardware.backends.tflite import to_tflite
from hwnas.hardware.device import Device


class TfliteFormat(Format):
    name = "tflite"
    backend = "tflite"
    default_device = "cpu-tflite"
    suffix = ".tflite"

    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        from hwnas.hardware.backends.tflite import TfliteBackend, TfliteRunnable, quantize_tflite

        data = to_tflite(job.subnet, [job.input_shape])
        info: dict = {"signature": "serving_default"}
        if device.precision == "int8":
            data = quantize_tflite(data, job.calibration_sets())
            runnable = TfliteRunnable(data, [job.input_shape], 1)
            info["quantization"] = "full integer: int8 per-channel weights, int8 activations, int8 input and output"
            info["input_quantization"] = [asdict(q) for q in runnable.input_quant if q is not None]
            info["output_quantization"] = [asdict(q) for q in runnable.output_quant if q is not None]
        path = atomic_write_bytes(folder / self.filename(name), data)
        inputs, outputs = signature_names(data)
        info["bytes"] = path.stat().st_size
        return Written([path], TfliteBackend(device).versions(), info, inputs=inputs, outputs=outputs)


def signature_names(model: bytes) -> tuple[list[str], list[str]]:
    """The input and output names of the flatbuffer's default signature, as LiteRT reports them."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=model).get_signature_list()
    if signatures:
        signature = signatures.get("serving_default") or next(iter(signatures.values()))
        return list(signature["inputs"]), list(signature["outputs"])
    interpreter = Interpreter(model_content=model)
    return [d["name"] for d in interpreter.get_input_details()], [d["name"] for d in interpreter.get_output_details()]
