"""LiteRT (TFLite) backend: litert-torch conversion, the ai-edge-litert interpreter (XNNPACK)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable, quiet_fds
from hwnas.nn.blocks import folded


def to_tflite(module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> bytes:
    """Convert `module` with litert-torch for fixed input shapes; returns the flatbuffer.

    BatchNorm is folded into the convs first (`folded`): litert-torch's torch.export and MLIR
    lowering dominate the time, and a folded alphanet subnet at 256x192 converts in 30.6 s instead
    of 47.5 s, to the same outputs (1.2e-7) (`python -m bench.tflite_convert`)."""
    example = tuple(torch.zeros(s) for s in input_shapes)
    with quiet_fds(), tempfile.TemporaryDirectory() as tmp:
        import litert_torch

        path = Path(tmp) / "model.tflite"
        litert_torch.convert(folded(module), example).export(str(path))
        return path.read_bytes()


class TfliteRunnable(Runnable):
    def __init__(self, model: bytes, input_shapes, threads: int):
        super().__init__(input_shapes)
        with quiet_fds():
            from ai_edge_litert.interpreter import Interpreter

            self.interpreter = Interpreter(model_content=model, num_threads=threads)
            self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()
        # inputs are named `..._args_<i>` after the converter's positional arguments
        order = sorted(
            details,
            key=lambda d: (
                int(re.findall(r"args_(\d+)", d["name"])[-1]) if re.findall(r"args_(\d+)", d["name"]) else d["index"]
            ),
        )
        self.input_indices = [d["index"] for d in order]
        self.output_indices = [d["index"] for d in self.interpreter.get_output_details()]

    def _set(self, inputs: Sequence[np.ndarray]) -> None:
        for index, x in zip(self.input_indices, inputs, strict=True):
            self.interpreter.set_tensor(index, np.ascontiguousarray(x, dtype=np.float32))

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._set(inputs)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i).copy() for i in self.output_indices]

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        self._set(inputs)
        return self.interpreter.invoke


class TfliteBackend(Backend):
    name = "tflite"
    slow_prepare = True  # seconds per block, most of a minute per subnet: convert in worker processes

    def load(self, artifact: Artifact) -> TfliteRunnable:
        return TfliteRunnable(artifact.payload, artifact.input_shapes, self.device.threads)

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        return Artifact(to_tflite(module, input_shapes), tuple(tuple(s) for s in input_shapes))

    def versions(self) -> dict[str, str]:
        return {
            "ai-edge-litert": version("ai-edge-litert"),
            "litert-torch": version("litert-torch"),
            "torch": torch.__version__,
        }
