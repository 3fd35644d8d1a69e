"""Core ML backend: coremltools conversion to an mlprogram; prediction and timing only on macOS.

Conversion runs anywhere coremltools installs; `MLModel.predict` needs macOS, so on other hosts
`run` and `measure` raise a `DeviceError` that says to run `hwnas agent` on the Mac.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable, quiet_fds
from hwnas.hardware.device import DeviceError


def to_mlmodel(
    module: nn.Module, input_shapes: Sequence[tuple[int, ...]], *, precision: str = "fp16", compute_units: str = "ALL"
):
    """An mlprogram `MLModel` (float32 inputs `input0..`, outputs `output0..`) from `torch.export`.

    The exported program has static shapes, so resizes to feature-map sizes become constants (a
    `torch.jit.trace` keeps them as shape arithmetic, which coremltools cannot convert).
    """
    with quiet_fds(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

        example = tuple(torch.zeros(s) for s in input_shapes)
        module = module.eval()
        with torch.no_grad():
            outputs = module(*example)
        count = len(outputs) if isinstance(outputs, tuple | list) else 1
        program = torch.export.export(module, example).run_decompositions({})
        return ct.convert(
            program,
            inputs=[ct.TensorType(name=f"input{i}", shape=s, dtype=np.float32) for i, s in enumerate(input_shapes)],
            outputs=[ct.TensorType(name=f"output{i}", dtype=np.float32) for i in range(count)],
            convert_to="mlprogram",
            compute_units=getattr(ct.ComputeUnit, compute_units),
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.macOS13,
        )


class CoremlRunnable(Runnable):
    def __init__(self, model, input_shapes):
        super().__init__(input_shapes)
        self.model = model

    def _require_macos(self) -> None:
        if platform.system() != "Darwin":
            raise DeviceError("Core ML predictions need macOS; run `hwnas agent` on the Mac and pass --remote")

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict:
        return {f"input{i}": np.asarray(x, dtype=np.float32) for i, x in enumerate(inputs)}

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._require_macos()
        return list(self.model.predict(self._feed(inputs)).values())

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        self._require_macos()
        feed, model = self._feed(inputs), self.model
        return lambda: model.predict(feed)


class CoremlBackend(Backend):
    name = "coreml"

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        model = to_mlmodel(
            module, input_shapes, precision=self.device.precision, compute_units=self.device.compute_units
        )
        return Artifact(model, tuple(tuple(s) for s in input_shapes))

    def load(self, artifact: Artifact) -> CoremlRunnable:
        return CoremlRunnable(artifact.payload, artifact.input_shapes)

    def versions(self) -> dict[str, str]:
        import coremltools

        return {
            "coremltools": coremltools.__version__,
            "torch": torch.__version__,
            "macos": platform.mac_ver()[0] or "n/a",
        }
