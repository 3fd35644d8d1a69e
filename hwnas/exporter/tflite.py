"""TFLite (LiteRT): litert-torch conversion to a flatbuffer, verified with the ai-edge-litert interpreter."""

from __future__ import annotations

from pathlib import Path

from hwnas.backends.tflite import to_tflite
from hwnas.devices import Device
from hwnas.exporter.base import Format, Job, Written
from hwnas.io import atomic_write_bytes


class TfliteFormat(Format):
    name = "tflite"
    backend = "tflite"
    default_device = "cpu-tflite"
    suffix = ".tflite"

    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        from hwnas.backends.tflite import TfliteBackend

        path = atomic_write_bytes(folder / self.filename(name), to_tflite(job.subnet, [job.input_shape]))
        return Written([path], TfliteBackend(device).versions(), {"bytes": path.stat().st_size})
