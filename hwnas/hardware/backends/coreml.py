"""Core ML backend: coremltools conversion to an mlprogram; prediction and timing only on macOS.

Conversion runs anywhere coremltools installs; `MLModel.predict` needs macOS, so on other hosts
`run` and `measure` raise a `DeviceError` that says to run `hwnas agent` on the Mac.

Int8 is W8A8 as coremltools' optimisation guide describes it (int8 weights per output channel,
symmetric activations, uint8 with zero point 0 where never negative; the Neural Engine's int8-int8
compute): BatchNorm is folded, activation ranges are calibrated in torch, and the graph with
explicit quantize/dequantize operations (`hwnas.nn.quantize.simulated_int8(explicit=True)`) is
converted, so the weights become
`constexpr_affine_dequantize` constants and each convolution's input and output `quantize` /
`dequantize` pairs that Core ML fuses into integer kernels. (coremltools' own activation
calibration, `linear_quantize_activations`, runs predictions and so needs macOS; its PT2E
quantizer needs the `torch.ao` quantizer API that torch 2.10 removed.)
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable, calibration_inputs, quiet_fds
from hwnas.hardware.device import DeviceError


def w8a8(module: nn.Module, calibration: Sequence[Sequence[np.ndarray]]) -> nn.Module:
    """The torch graph a Core ML int8 model is converted from: `module` with BN folded, calibrated
    on `calibration` (input sets), explicit quantize/dequantize operations and int8 weights."""
    from hwnas.nn.quantize import SCHEMES, simulated_int8

    batches = [tuple(torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in inputs) for inputs in calibration]
    return simulated_int8(module, batches, SCHEMES["coreml"], explicit=True)


def to_mlmodel(
    module: nn.Module,
    input_shapes: Sequence[tuple[int, ...]],
    *,
    precision: str = "fp16",
    compute_units: str = "ALL",
):
    """An mlprogram `MLModel` (float32 inputs `input0..`, outputs `output0..`) from `torch.export`;
    int8: `module` is a `w8a8` graph (its float operations run in fp16).

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
            compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
            # quantize/dequantize operations are macOS 14 / iOS 17 opset
            minimum_deployment_target=ct.target.macOS14 if precision == "int8" else ct.target.macOS13,
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
        """The mlprogram of `module`; int8 calibrated on `calibration_inputs` (an export calibrates on
        images)."""
        if self.device.precision == "int8":
            module = w8a8(module, calibration_inputs(input_shapes))
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
