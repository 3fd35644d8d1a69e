"""Runtime adapters, one module per runtime, behind `Backend` / `Runnable` (see `base`)."""

from __future__ import annotations

from hwnas.hardware.backends.base import Backend, Protocol, Runnable, Timing, measure
from hwnas.hardware.device import Device


def get_backend(device: Device) -> Backend:
    """The backend for a device spec; runtime packages are imported only when used."""
    if device.backend == "onnxruntime":
        from hwnas.hardware.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(device)
    if device.backend == "tflite":
        from hwnas.hardware.backends.tflite import TfliteBackend

        return TfliteBackend(device)
    if device.backend == "torch":
        from hwnas.hardware.backends.torch import TorchBackend

        return TorchBackend(device)
    if device.backend == "coreml":
        from hwnas.hardware.backends.coreml import CoremlBackend

        return CoremlBackend(device)
    from hwnas.hardware.backends.tensorrt import TensorrtBackend

    return TensorrtBackend(device)


__all__ = ["Backend", "Protocol", "Runnable", "Timing", "get_backend", "measure"]
