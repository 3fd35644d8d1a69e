"""Int8 simulated in torch: what a search scores when it ranks the model that ships
(`hwnas search --quantized-accuracy`).

`simulated_int8(net, batches, scheme)` returns a copy of a static subnet that computes as the
runtimes' static int8 models do where it matters most: BatchNorm folded into the convolutions, each
convolution's (and linear layer's) weights fake-quantized per output channel to symmetric int8, and
each one's input and output fake-quantized per tensor over the range it took on `batches` (MinMax
calibration), uint8 or int8, asymmetric or symmetric as the runtime quantizes activations
(`SCHEMES`, after `hwnas.hardware.backends`: ONNX Runtime's CPU provider U8S8, LiteRT int8
asymmetric, TensorRT int8 symmetric). The runtimes also quantize the outputs of elementwise
operations (sigmoid, products, sums, resizes); those are not simulated, so the simulation is near
the runtime's int8 model, not equal to it (`bench.int8 --part ranking` measures how its scores rank
subnets against the runtime's own).

With `explicit=True` the same numbers are computed with explicit quantize/dequantize operations
(`torch.ops.quantized_decomposed`) and int8 weight tensors dequantized per channel, the graph that
`torch.export` hands to a converter that lowers it to integer kernels: Core ML's W8A8 mlprogram
(`hwnas.hardware.backends.coreml`) is converted from it, so there the simulation *is* the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from hwnas.nn.blocks import folded


@dataclass(frozen=True)
class Scheme:
    """How a runtime quantizes activations, and the bound of its symmetric per-channel int8
    weights: 127, or 64 for ONNX Runtime's models, quantized with `reduce_range` (7-bit weights, as
    ONNX Runtime's quantization guide advises: x86 CPUs without VNNI saturate 8-bit U8S8 products)."""

    dtype: str  # "uint8" or "int8"
    symmetric: bool
    # a tensor never negative on the calibration set is uint8 with zero point 0 (coremltools'
    # symmetric scheme: twice the steps of int8 over the same range)
    unsigned_when_nonnegative: bool = False
    weight_bound: int = 127

    @property
    def bounds(self) -> tuple[int, int]:
        """The integer range (symmetric int8 leaves -128 out, as ONNX Runtime and TensorRT do)."""
        if self.dtype == "uint8":
            return 0, 255
        return (-127, 127) if self.symmetric else (-128, 127)

    def __str__(self) -> str:
        unsigned = ", uint8 where never negative" if self.unsigned_when_nonnegative else ""
        return f"{self.dtype} {'symmetric' if self.symmetric else 'asymmetric'} activations{unsigned}"


SCHEMES = {
    "onnxruntime": Scheme("uint8", False, weight_bound=64),
    "onnxruntime-symmetric": Scheme("int8", True, weight_bound=64),
    "tflite": Scheme("int8", False),
    "tensorrt": Scheme("int8", True, weight_bound=64),  # its QDQ graph is ONNX Runtime's (`quantize_onnx`)
    "coreml": Scheme("int8", True, unsigned_when_nonnegative=True),  # coremltools' symmetric activations
}


def scheme_for(backend: str, provider: str = "CPUExecutionProvider") -> Scheme:
    """The activation scheme of a device's int8 model, as its backend builds it."""
    if backend == "onnxruntime" and provider != "CPUExecutionProvider":
        return SCHEMES["onnxruntime-symmetric"]
    return SCHEMES[backend]


def _affine(lo: float, hi: float, scheme: Scheme) -> tuple[float, int]:
    """(scale, zero point) covering [lo, hi] and 0 in the scheme's integer range."""
    qmin, qmax = scheme.bounds
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if scheme.symmetric:
        bound = max(-lo, hi)
        return (bound / ((qmax - qmin) / 2) if bound > 0 else 1.0), 0
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    return scale, int(round(qmin - lo / scale))


def _grid(lo: float, hi: float, scheme: Scheme) -> tuple[float, int, int, int, str]:
    """(scale, zero point, qmin, qmax, dtype) of a tensor that took values in [lo, hi]."""
    if scheme.unsigned_when_nonnegative and lo >= 0:
        return (hi / 255 if hi > 0 else 1.0), 0, 0, 255, "uint8"
    return *_affine(lo, hi, scheme), *scheme.bounds, scheme.dtype


def _fake(lo: float, hi: float, scheme: Scheme, *, explicit: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Fake quantization of a tensor over [lo, hi] in `scheme`; `explicit`: as a quantize and a
    dequantize operation (same values)."""
    scale, zero, qmin, qmax, dtype_name = _grid(lo, hi, scheme)
    if not explicit:
        return lambda x: torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)
    ops, dtype = _decomposed(), getattr(torch, dtype_name)
    return lambda x: ops.dequantize_per_tensor(
        ops.quantize_per_tensor(x, scale, zero, qmin, qmax, dtype), scale, zero, qmin, qmax, dtype
    )


def _decomposed():
    """`torch.ops.quantized_decomposed` (registered when its module is imported)."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    return torch.ops.quantized_decomposed


def _weight_scale(w: torch.Tensor, bound: int = 127) -> torch.Tensor:
    """Symmetric int8 per output channel, as ONNX Runtime quantizes symmetric weights: -bound..bound,
    scale |w|max / bound, zero point 0."""
    return (w.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / bound).to(torch.float32)


def _weights_int8(module: nn.Module, bound: int = 127) -> None:
    """The module's weights fake-quantized in place (`_weight_scale`)."""
    w = module.weight.data
    scale = _weight_scale(w, bound)
    zero = torch.zeros(len(scale), dtype=torch.int32, device=w.device)
    module.weight.data = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -bound, bound)


class Int8Weights(nn.Module):
    """A convolution or linear layer whose weights are held as int8 with a scale per output channel
    and dequantized in its forward (`_weight_scale`), so an exported graph carries int8 constants."""

    def __init__(self, layer: nn.Conv2d | nn.Linear):
        super().__init__()
        self.layer = layer
        w = layer.weight.data
        scale = _weight_scale(w)
        shape = (-1,) + (1,) * (w.dim() - 1)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", torch.zeros(len(scale), dtype=torch.int64, device=w.device))
        self.register_buffer("q", torch.clamp(torch.round(w / scale.view(shape)), -127, 127).to(torch.int8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = _decomposed().dequantize_per_channel(self.q, self.scale, self.zero, 0, -127, 127, torch.int8)
        if isinstance(self.layer, nn.Linear):
            return nn.functional.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)


def _ranges(net: nn.Module, layers: dict[str, nn.Module], batches: Iterable[torch.Tensor]) -> dict:
    """(name, "in"/"out") -> [min, max] each layer's input and output took on `batches` (MinMax);
    a layer that never ran has none."""
    seen: dict = {}

    def widen(key, x: torch.Tensor) -> None:
        lo, hi = seen.get(key, (float("inf"), float("-inf")))
        seen[key] = (min(lo, float(x.min())), max(hi, float(x.max())))

    hooks = [m.register_forward_pre_hook(lambda m, inputs, n=n: widen((n, "in"), inputs[0])) for n, m in layers.items()]
    hooks += [m.register_forward_hook(lambda m, inputs, out, n=n: widen((n, "out"), out)) for n, m in layers.items()]
    with torch.no_grad():
        for batch in batches:  # a tensor, or a tuple of a model's inputs
            net(*batch) if isinstance(batch, tuple) else net(batch)
    for hook in hooks:
        hook.remove()
    return seen


def simulated_int8(
    net: nn.Module, batches: Iterable[torch.Tensor], scheme: Scheme, *, explicit: bool = False
) -> nn.Module:
    """An eval-mode copy of static `net` with int8 simulated (see the module's notes); `batches`
    are normalised image batches on the net's device (or tuples of its inputs), the activations'
    calibration; `explicit`: as explicit quantize/dequantize operations and int8 weight tensors
    (`Int8Weights`), the same values."""
    sim = folded(net)
    layers = {n: m for n, m in sim.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    seen = _ranges(sim, layers, batches)
    for name, m in layers.items():
        if (name, "in") not in seen:  # never ran on the calibration batches
            continue
        before, after = (_fake(*seen[(name, side)], scheme, explicit=explicit) for side in ("in", "out"))
        if explicit:
            parent, _, attribute = name.rpartition(".")
            m = Int8Weights(m)
            setattr(sim.get_submodule(parent), attribute, m)
        else:
            _weights_int8(m, scheme.weight_bound)
        m.register_forward_pre_hook(lambda _m, inputs, q=before: (q(inputs[0]), *inputs[1:]))
        m.register_forward_hook(lambda _m, _inputs, out, q=after: q(out))
    return sim
