"""TFLite (LiteRT): litert-torch conversion to a flatbuffer, verified with the ai-edge-litert interpreter."""

from __future__ import annotations

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
        from hwnas.hardware.backends.tflite import TfliteBackend

        data = to_tflite(job.subnet, [job.input_shape])
        path = atomic_write_bytes(folder / self.filename(name), data)
        inputs, outputs = signature_names(data)
        info = {"bytes": path.stat().st_size, "signature": "serving_default"}
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
