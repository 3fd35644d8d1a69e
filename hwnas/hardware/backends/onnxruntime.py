"""ONNX Runtime backend: torch.onnx export, a session with fixed threads and the spec's provider.

Threads follow the measurement protocol: `intra_op_num_threads` from the spec,
`inter_op_num_threads = 1`, sequential execution, all graph optimisations.

At int8 the graph is quantized statically as ONNX Runtime's quantization guide describes
(`onnxruntime.quantization`): `quant_pre_process` (shape inference and constant folding: without it
a convolution whose bias the torchscript exporter routes through an Identity stays float), then
`quantize_static` to QDQ with per-channel int8 weights and MinMax-calibrated activations, which the
CPU provider fuses into QLinearConv/QLinearAdd/... kernels. Weights are 7-bit (`reduce_range`, as
the guide advises where a CPU may lack VNNI: on an AVX2-only AMD EPYC the 8-bit U8S8 products
saturated, one convolution's outputs up to 37 output steps off; a file that ships must compute right on any x86
CPU). Activations are uint8 (U8S8) for the CPU
provider: on this machine's AVX-512 VNNI the int8-activation (S8S8) model of an alphanet subnet ran
2.3x slower (46 ms against 20 ms at 256x192, a first check); symmetric int8 activations (S8S8) for
the providers that take only those (TensorRT's explicit quantization). A block model for a latency
table is timed as it runs inside a whole int8 model: its boundary QuantizeLinear and
DequantizeLinear removed (`integer_io`: between blocks the tensors stay integer) and its input and
output channels-last (`ChannelsLastIO`: the CPU provider runs QLinearConv in NHWC and, in a whole
model, transposes only at its ends; a block with NCHW edges paid two transposes the whole does not:
on six alphanet subnets, one pass each, block sums came to 1.16-1.54x their measured time against
0.92-1.30x channels-last). On an idle machine the measured int8 table sums to 1.27x of whole
subnets, nearly in proportion (`bench.lut_fidelity`, docs/guides/quantization.md), which its
calibration line takes out.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Quantized, Runnable, calibration_inputs
from hwnas.hardware.device import DeviceError
from hwnas.nn.blocks import folded
from hwnas.nn.static import ChannelsLastIO, channels_last_shapes


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


def quantize_onnx(
    onnx_bytes: bytes,
    calibration: Sequence[Sequence[np.ndarray]],
    *,
    symmetric: bool = False,
    integer_io: bool = False,
) -> bytes:
    """The QDQ int8 model of float `onnx_bytes`: per-channel 7-bit int8 weights, activations calibrated
    (MinMax) on `calibration` (input sets), uint8 or, `symmetric`, int8 with zero point 0; with
    `integer_io`, the graph's boundary Quantize/DequantizeLinear removed (see the module's notes)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in onnx.load_from_string(onnx_bytes).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.sets = iter(calibration)

        def get_next(self):
            inputs = next(self.sets, None)
            return None if inputs is None else dict(zip(names, inputs, strict=True))

    with tempfile.TemporaryDirectory() as tmp, _quiet_logger("root"):
        raw, pre, out = (Path(tmp) / n for n in ("raw.onnx", "pre.onnx", "int8.onnx"))
        raw.write_bytes(onnx_bytes)
        quant_pre_process(str(raw), str(pre))
        activations = QuantType.QInt8 if symmetric else QuantType.QUInt8
        quantize_static(
            str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=activations, weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )  # fmt: skip
        model = onnx.load(str(out))
    if integer_io:
        _strip_boundary(model)
    return model.SerializeToString()


def _strip_boundary(model) -> None:
    """Make the graph take and return the integers its first QuantizeLinear and last
    DequantizeLinear convert (recording each scale and zero point in the model's metadata)."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}
    meta: dict[str, str] = {}
    for i, value in enumerate(graph.input):
        chain = _layout_chain(value.name, consumers)  # Transposes before the first QuantizeLinear
        users = consumers.get(chain[-1].output[0] if chain else value.name, [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q = users[0]
        zero = consts[q.input[2]]
        if chain:  # the layout ops move the integers instead: their last output is the Q's
            chain[-1].output[0] = q.output[0]
        else:
            value.name = q.output[0]
        value.type.tensor_type.elem_type = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype)
        graph.node.remove(q)
        meta[f"hwnas.input{i}"] = f"{zero.dtype.name},{float(consts[q.input[1]])},{int(zero)}"
    for i, value in enumerate(graph.output):
        dq = producers.get(value.name)
        if dq is None or dq.op_type != "DequantizeLinear" or consumers.get(value.name):
            continue
        zero = consts[dq.input[2]]
        value.name = dq.input[0]
        value.type.tensor_type.elem_type = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype)
        graph.node.remove(dq)
        meta[f"hwnas.output{i}"] = f"{zero.dtype.name},{float(consts[dq.input[1]])},{int(zero)}"
    for key, text in meta.items():
        model.metadata_props.add(key=key, value=text)


def _layout_chain(name: str, consumers: dict[str, list]) -> list:
    """The Transpose nodes that alone follow tensor `name`, one after another."""
    chain = []
    while len(consumers.get(name, [])) == 1 and consumers[name][0].op_type == "Transpose":
        chain.append(consumers[name][0])
        name = chain[-1].output[0]
    return chain


def _boundary(session, which: str, count: int) -> list[Quantized | None]:
    """The integer inputs' or outputs' quantization a model records (`_strip_boundary`)."""
    recorded = session.get_modelmeta().custom_metadata_map
    out: list[Quantized | None] = []
    for i in range(count):
        text = recorded.get(f"hwnas.{which}{i}")
        if text is None:
            out.append(None)
            continue
        dtype, scale, zero = text.split(",")
        out.append(Quantized(dtype, float(scale), int(zero)))
    return out


class OrtRunnable(Runnable):
    def __init__(self, session, input_shapes, channels_last: bool = False):
        super().__init__(input_shapes)
        self.channels_last = channels_last
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.input_quant = _boundary(session, "input", len(self.input_names))
        self.output_quant = _boundary(session, "output", len(session.get_outputs()))

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict:
        return dict(zip(self.input_names, inputs, strict=True))

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.real_outputs(self.session.run(None, self._feed(self.native_inputs(inputs))))

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
        return OrtRunnable(session, artifact.input_shapes, artifact.channels_last)

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        """The float graph; at int8 its QDQ model as a latency table times it: calibrated on
        `calibration_inputs`, with integer I/O (an export calibrates on images: `quantize_onnx`)."""
        if self.device.precision == "int8":  # BN folded in torch: every conv's bias is an initializer
            shapes = channels_last_shapes(list(input_shapes))
            onnx_bytes = to_onnx(ChannelsLastIO(folded(module)), shapes, exporter=self.device.exporter,
                                 opset=self.device.opset)  # fmt: skip
            onnx_bytes = quantize_onnx(onnx_bytes, calibration_inputs(shapes), symmetric=self.symmetric(),
                                       integer_io=True)  # fmt: skip
            return Artifact(onnx_bytes, tuple(tuple(s) for s in input_shapes), channels_last=True)
        onnx_bytes = to_onnx(module, input_shapes, exporter=self.device.exporter, opset=self.device.opset)
        return Artifact(onnx_bytes, tuple(tuple(s) for s in input_shapes))

    def symmetric(self) -> bool:
        """Whether int8 activations are symmetric int8 (providers other than the CPU's) or uint8."""
        return self.device.provider != "CPUExecutionProvider"

    def versions(self) -> dict[str, str]:
        return {
            "onnxruntime": self._ort().__version__,
            "torch": torch.__version__,
            "exporter": self.device.exporter,
            "opset": str(self.device.opset),
        }
