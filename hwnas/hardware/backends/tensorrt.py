"""TensorRT backend: an engine built from ONNX, run with `execute_async_v3` on torch CUDA buffers.

TensorRT 10 sets precision with builder flags (`BuilderFlag.FP16`); TensorRT 11 removed them
(networks are strongly typed), so FP16 comes from converting the ONNX model to float16 first.
`build_plan` makes that choice and is unit-tested without a GPU; everything after it needs an
NVIDIA GPU and the `tensorrt` package (`pip install 'hwnas[tensorrt]'` from NVIDIA's index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable
from hwnas.hardware.backends.onnxruntime import to_onnx
from hwnas.hardware.backends.torch import cuda_event_timer
from hwnas.hardware.device import DeviceError

WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class BuildPlan:
    """How to build an engine for a precision on a TensorRT major version."""

    builder_flags: tuple[str, ...]
    strongly_typed: bool
    convert_onnx_to_fp16: bool


def build_plan(precision: str, trt_version: str) -> BuildPlan:
    major = int(trt_version.split(".")[0])
    if precision == "int8":
        raise DeviceError(
            "INT8 TensorRT engines need calibration data, which hwnas does not support yet; "
            "use precision 'fp16' or 'fp32'"
        )
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


def build_engine(onnx_bytes: bytes, precision: str) -> bytes:
    """A serialized engine for `onnx_bytes` (needs a GPU)."""
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
        self.device.require_available()
        onnx_bytes = to_onnx(module, input_shapes, exporter=self.device.exporter, opset=self.device.opset)
        return Artifact(build_engine(onnx_bytes, self.device.precision), tuple(tuple(s) for s in input_shapes))

    def load(self, artifact: Artifact) -> TensorrtRunnable:
        return TensorrtRunnable(artifact.payload, artifact.input_shapes)

    def versions(self) -> dict[str, str]:
        import tensorrt

        return {"tensorrt": tensorrt.__version__, "torch": torch.__version__, "cuda": str(torch.version.cuda)}
