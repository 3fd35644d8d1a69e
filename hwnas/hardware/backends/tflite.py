"""LiteRT (TFLite) backend: litert-torch conversion, the ai-edge-litert interpreter (XNNPACK).

At int8 the float flatbuffer is quantized to full integer by ai-edge-quantizer's static recipe
(`static_wi8_ai8`: int8 weights per channel, int8 activations calibrated on sample inputs, int8
inputs and outputs), which XNNPACK runs with its int8 kernels. Chosen over litert-torch's PT2E
quantizer by measurement (`python -m bench.int8 --part converters`, three alphanet subnets at
256x192, docs/guides/quantization.md): both give int8 I/O; ai-edge-quantizer took 1.7-3.3 s on top
of the float conversion where PT2E's export, prepare, calibrate and convert took 34-51 s, and its
models ran faster and followed fp32 at least as closely.

Every model measured here, a table's block or a whole subnet, fp32 or int8, takes and returns
channels-last (NHWC) tensors (`ChannelsLastIO`), as the tensors between the blocks of a whole model
are inside XNNPACK: with NCHW edges each block paid two TRANSPOSE ops the whole model pays once, and
raw block sums were 1.15x the whole (issue 37; the layout is recorded in the table's versions, so a
table from before is not resumed).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Quantized, Runnable, calibration_inputs, quiet_fds
from hwnas.nn.blocks import folded
from hwnas.nn.static import ChannelsLastIO, channels_last_shapes

IO_LAYOUT = "nhwc"  # every measured model's edges (module docstring); in each table's versions


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


def quantize_tflite(model: bytes, calibration: Sequence[Sequence[np.ndarray]]) -> bytes:
    """The full-integer int8 flatbuffer of float `model`, activations calibrated on `calibration`
    (input sets, in the order of the model's positional inputs)."""
    with quiet_fds():
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe

        inputs = Interpreter(model_content=model).get_signature_list()["serving_default"]["inputs"]
        names = sorted(inputs, key=lambda n: (_position(n, 0), n))
        engine = quantizer.Quantizer(model)
        engine.load_quantization_recipe(recipe.static_wi8_ai8())
        samples = [dict(zip(names, inputs, strict=True)) for inputs in calibration]
        result = engine.calibrate({"serving_default": samples})
        return bytes(engine.quantize(result).quantized_model)


def _position(name: str, fallback: int) -> int:
    """A converted input's position: `args_<i>` after the converter's positional arguments."""
    found = re.findall(r"args_(\d+)", name)
    return int(found[-1]) if found else fallback


def _quantized(detail: dict) -> Quantized | None:
    if detail["dtype"] == np.float32:
        return None
    scale, zero = detail["quantization"]
    return Quantized(np.dtype(detail["dtype"]).name, float(scale), int(zero))


class TfliteRunnable(Runnable):
    def __init__(self, model: bytes, input_shapes, threads: int, channels_last: bool = False):
        super().__init__(input_shapes)
        self.channels_last = channels_last
        with quiet_fds():
            from ai_edge_litert.interpreter import Interpreter

            self.interpreter = Interpreter(model_content=model, num_threads=threads)
            self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()
        order = sorted(details, key=lambda d: _position(d["name"], d["index"]))
        self.input_indices = [d["index"] for d in order]
        outputs = self.interpreter.get_output_details()
        self.output_indices = [d["index"] for d in outputs]
        self.input_quant = [_quantized(d) for d in order]
        self.output_quant = [_quantized(d) for d in outputs]

    def _set(self, inputs: Sequence[np.ndarray]) -> None:
        for index, x in zip(self.input_indices, inputs, strict=True):
            self.interpreter.set_tensor(index, np.ascontiguousarray(x))

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._set(self.native_inputs(inputs))
        self.interpreter.invoke()
        return self.real_outputs([self.interpreter.get_tensor(i).copy() for i in self.output_indices])

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        self._set(inputs)
        return self.interpreter.invoke


class TfliteBackend(Backend):
    name = "tflite"
    slow_prepare = True  # seconds per block, most of a minute per subnet: convert in worker processes

    def load(self, artifact: Artifact) -> TfliteRunnable:
        return TfliteRunnable(artifact.payload, artifact.input_shapes, self.device.threads, artifact.channels_last)

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        """The float flatbuffer with NHWC edges (`ChannelsLastIO`: the converter's own layout
        transposes at a block's edges cancel, as between the blocks of a whole model); at int8 its
        full-integer model calibrated on `calibration_inputs` (an export calibrates on images and
        keeps NCHW: `quantize_tflite`)."""
        shapes = tuple(tuple(s) for s in input_shapes)
        nhwc = channels_last_shapes(list(input_shapes))
        model = to_tflite(ChannelsLastIO(module), nhwc)
        if self.device.precision == "int8":
            model = quantize_tflite(model, calibration_inputs(nhwc))
        return Artifact(model, shapes, channels_last=True)

    def versions(self) -> dict[str, str]:
        found = {
            "ai-edge-litert": version("ai-edge-litert"),
            "litert-torch": version("litert-torch"),
            "torch": torch.__version__,
            "io-layout": IO_LAYOUT,
        }
        if self.device.precision == "int8":
            found["ai-edge-quantizer"] = version("ai-edge-quantizer")
        return found
