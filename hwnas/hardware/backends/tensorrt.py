"""TensorRT backend: an engine built from ONNX, run with `execute_async_v3` on torch CUDA buffers.

TensorRT 10 sets precision with builder flags (`BuilderFlag.FP16`); TensorRT 11 removed them
(networks are strongly typed), so FP16 comes from converting the ONNX model to float16 first.
INT8 is explicit quantization on both: a QDQ ONNX with symmetric int8 activations and per-channel
weights (`quantize_onnx(symmetric=True)`), built strongly typed with no precision flag, as NVIDIA's
"Explicit Quantization" guide asks; the layers outside Q/DQ pairs run at fp32. The engine is built
with detailed profiling verbosity so that its inspector says what each layer actually runs at
(`layer_precisions`: a convolution whose input is not int8 fell back). `build_plan` and
`layer_precisions` are unit-tested without a GPU; everything else needs an NVIDIA GPU and the
`tensorrt` package (`pip install 'hwnas[tensorrt]'` from NVIDIA's index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable, calibration_inputs
from hwnas.hardware.backends.onnxruntime import quantize_onnx, to_onnx
from hwnas.hardware.backends.torch import cuda_event_timer
from hwnas.hardware.device import DeviceError
from hwnas.nn.blocks import folded

WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class BuildPlan:
    """How to build an engine for a precision on a TensorRT major version."""

    builder_flags: tuple[str, ...]
    strongly_typed: bool
    convert_onnx_to_fp16: bool


def build_plan(precision: str, trt_version: str) -> BuildPlan:
    major = int(trt_version.split(".")[0])
    if major < 10:
        raise DeviceError(f"TensorRT {trt_version} is not supported; hwnas needs TensorRT 10 or 11")
    if precision == "int8":  # explicit quantization: the QDQ graph sets every precision
        return BuildPlan((), True, False)
    if major >= 11:
        return BuildPlan((), True, precision == "fp16")
    if major == 10:
        return BuildPlan(("FP16",) if precision == "fp16" else (), False, False)
    raise DeviceError(f"TensorRT {trt_version} is not supported; hwnas needs TensorRT 10 or 11")


def trtexec_command(onnx_file: str, engine_file: str, precision: str, trt_version: str) -> str:
    """The `trtexec` line that builds the engine `build_engine` would build, for a TensorRT version."""
    plan = build_plan(precision, trt_version)
    parts = ["trtexec", f"--onnx={onnx_file}", f"--saveEngine={engine_file}"]
    parts += [f"--{flag.lower()}" for flag in plan.builder_flags]
    if plan.strongly_typed:
        parts.append("--stronglyTyped")
    parts.append(f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M")
    return " ".join(parts)


def fp16_onnx(onnx_bytes: bytes) -> bytes:
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        raise DeviceError(
            "TensorRT 11 FP16 needs the ONNX converted to float16: pip install onnxconverter-common"
        ) from None
    model = float16.convert_float_to_float16(onnx.load_from_string(onnx_bytes), keep_io_types=True)
    return model.SerializeToString()


@dataclass(frozen=True)
class LayerPrecisions:
    """What an engine's layers run at, from its inspector's JSON: layers per input datatype, and
    the compute layers (convolutions, matrix products) of an int8 engine that do not take int8."""

    counts: dict[str, int]
    compute: int
    fallbacks: tuple[str, ...]

    def line(self) -> str:
        shown = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        if not self.fallbacks:
            return f"{self.compute} compute layers, none fell back ({shown})"
        more = len(self.fallbacks) - 3
        names = ", ".join(self.fallbacks[:3]) + (f" and {more} more" if more > 0 else "")
        return f"{len(self.fallbacks)} of {self.compute} compute layers fell back from int8: {names} ({shown})"


_DATATYPES = (("int8", "int8"), ("fp16", "half"), ("fp16", "fp16"), ("fp32", "float"), ("fp32", "fp32"))
_COMPUTE = ("convolution", "conv", "gemm", "matrixmultiply", "fullyconnected")


def _datatype(tensor: dict) -> str:
    text = str(tensor.get("Format/Datatype", "")).lower()
    return next((name for name, word in _DATATYPES if word in text), "other")


def layer_precisions(info: dict) -> LayerPrecisions:
    """Read `engine inspector` JSON (`Layers`, each with `Inputs` carrying `Format/Datatype`): a
    layer counts at the datatype of its first input; a compute layer is one whose `LayerType` or
    `ParameterType` names a convolution or matrix product."""
    counts: dict[str, int] = {}
    compute, fallbacks = 0, []
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY verbosity lists names only
            raise DeviceError("the engine inspector listed layer names only: build with detailed profiling verbosity")
        inputs = layer.get("Inputs") or [{}]
        kind = _datatype(inputs[0])
        counts[kind] = counts.get(kind, 0) + 1
        what = f"{layer.get('LayerType', '')} {layer.get('ParameterType', '')}".lower()
        if any(word in what for word in _COMPUTE):
            compute += 1
            if kind != "int8":
                fallbacks.append(f"{layer.get('Name', '?')} ({kind})")
    return LayerPrecisions(counts, compute, tuple(fallbacks))


def inspect_engine(engine_bytes: bytes) -> dict:
    """The built engine's inspector output as JSON (needs a GPU)."""
    import json

    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    inspector = engine.create_engine_inspector()
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def build_engine(onnx_bytes: bytes, precision: str) -> bytes:
    """A serialized engine for `onnx_bytes` (a QDQ graph at int8; needs a GPU)."""
    import tensorrt as trt

    plan = build_plan(precision, trt.__version__)
    if plan.convert_onnx_to_fp16:
        onnx_bytes = fp16_onnx(onnx_bytes)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeviceError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector's per-layer datatypes
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise DeviceError("TensorRT failed to build an engine (see its log above)")
    return bytes(engine)


class TensorrtRunnable(Runnable):
    def __init__(self, engine_bytes: bytes, input_shapes):
        super().__init__(input_shapes)
        import tensorrt as trt

        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.buffers: dict[str, torch.Tensor] = {}

    def _bind(self, inputs: Sequence[np.ndarray]) -> None:
        for name, x in zip(self.inputs, inputs, strict=True):
            tensor = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device="cuda")
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.buffers[name] = tensor
            self.context.set_tensor_address(name, tensor.data_ptr())
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = torch.empty(shape, device="cuda", dtype=torch.float32)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())

    def _execute(self) -> None:
        self.context.execute_async_v3(self.stream.cuda_stream)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._bind(inputs)
        self._execute()
        self.stream.synchronize()
        return [self.buffers[n].cpu().numpy() for n in self.outputs]

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        self._bind(inputs)
        return self._execute

    def timer(self, call: Callable[[], object]) -> Callable[[], int]:
        return cuda_event_timer(call, self.stream)


class TensorrtBackend(Backend):
    name = "tensorrt"

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        """The engine; at int8 from the symmetric QDQ graph calibrated on `calibration_inputs`, with
        float I/O (a block then pays a quantize and a dequantize at its edges: not yet checked on a GPU)."""
        self.device.require_available()
        int8 = self.device.precision == "int8"
        module = folded(module) if int8 else module
        onnx_bytes = to_onnx(module, input_shapes, exporter=self.device.exporter, opset=self.device.opset)
        if int8:
            onnx_bytes = quantize_onnx(onnx_bytes, calibration_inputs(input_shapes), symmetric=True)
        return Artifact(build_engine(onnx_bytes, self.device.precision), tuple(tuple(s) for s in input_shapes))

    def load(self, artifact: Artifact) -> TensorrtRunnable:
        return TensorrtRunnable(artifact.payload, artifact.input_shapes)

    def versions(self) -> dict[str, str]:
        import tensorrt

        return {"tensorrt": tensorrt.__version__, "torch": torch.__version__, "cuda": str(torch.version.cuda)}
