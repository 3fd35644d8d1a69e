"""ONNX Runtime backend: torch.onnx export, a session with fixed threads and the spec's provider.

Threads follow the measurement protocol: `intra_op_num_threads` from the spec,
`inter_op_num_threads = 1`, sequential execution, all graph optimisations.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable
from hwnas.hardware.device import DeviceError


def to_onnx(
    module: nn.Module, input_shapes: Sequence[tuple[int, ...]], *, exporter: str = "torchscript", opset: int = 18
) -> bytes:
    """Serialised ONNX of `module` for fixed input shapes (inputs `input0..`, outputs `output0..`).

    `dynamo` is torch.onnx's current exporter (torch.export + onnxscript); `torchscript` the legacy
    tracer, several times faster to run, which tables use for their thousands of small blocks.
    """
    example = tuple(torch.zeros(s) for s in input_shapes)
    names = [f"input{i}" for i in range(len(example))]
    module = module.eval()
    with torch.no_grad():
        outputs = module(*example)
    count = len(outputs) if isinstance(outputs, tuple | list) else 1
    output_names = [f"output{i}" for i in range(count)]
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=names,
                output_names=output_names,
                opset_version=opset,
                verbose=False,
            )
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(
            module, example, buffer, dynamo=False, input_names=names, output_names=output_names, opset_version=opset
        )
        return buffer.getvalue()


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Raise a logger's level to ERROR for the duration (torch.onnx logs optional-op notes)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class OrtRunnable(Runnable):
    def __init__(self, session, input_shapes):
        super().__init__(input_shapes)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict:
        return {
            name: np.ascontiguousarray(x, dtype=np.float32) for name, x in zip(self.input_names, inputs, strict=True)
        }

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, self._feed(inputs))

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        feed, session = self._feed(inputs), self.session
        return lambda: session.run(None, feed)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _ort(self):
        import onnxruntime

        return onnxruntime

    def session_options(self):
        ort = self._ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.device.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return options

    def load(self, artifact: Artifact) -> OrtRunnable:
        ort = self._ort()
        if self.device.provider not in ort.get_available_providers():
            raise DeviceError(
                f"ONNX Runtime here has no {self.device.provider}; available: "
                f"{', '.join(ort.get_available_providers())}"
            )
        session = ort.InferenceSession(artifact.payload, self.session_options(), providers=[self.device.provider])
        return OrtRunnable(session, artifact.input_shapes)

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        onnx_bytes = to_onnx(module, input_shapes, exporter=self.device.exporter, opset=self.device.opset)
        return Artifact(onnx_bytes, tuple(tuple(s) for s in input_shapes))

    def versions(self) -> dict[str, str]:
        return {
            "onnxruntime": self._ort().__version__,
            "torch": torch.__version__,
            "exporter": self.device.exporter,
            "opset": str(self.device.opset),
        }
