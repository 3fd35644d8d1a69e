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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from hwnas.nn.blocks import folded


@dataclass(frozen=True)
class Scheme:
    """How a runtime quantizes activations (weights: symmetric int8 per output channel)."""

    dtype: str  # "uint8" or "int8"
    symmetric: bool

    @property
    def bounds(self) -> tuple[int, int]:
        """The integer range (symmetric int8 leaves -128 out, as ONNX Runtime and TensorRT do)."""
        if self.dtype == "uint8":
            return 0, 255
        return (-127, 127) if self.symmetric else (-128, 127)

    def __str__(self) -> str:
        return f"{self.dtype} {'symmetric' if self.symmetric else 'asymmetric'} activations"


SCHEMES = {
    "onnxruntime": Scheme("uint8", False),
    "onnxruntime-symmetric": Scheme("int8", True),
    "tflite": Scheme("int8", False),
    "tensorrt": Scheme("int8", True),
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


def _fake(lo: float, hi: float, scheme: Scheme) -> Callable[[torch.Tensor], torch.Tensor]:
    """Fake quantization of a tensor over [lo, hi] in `scheme`."""
    scale, zero = _affine(lo, hi, scheme)
    qmin, qmax = scheme.bounds
    return lambda x: torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)


def _weights_int8(module: nn.Module) -> None:
    """Symmetric int8 per output channel, in place, as ONNX Runtime quantizes symmetric weights:
    -127..127, scale |w|max / 127, zero point 0."""
    w = module.weight.data
    scale = (w.abs().flatten(1).amax(dim=1).clamp_min(1e-12) / 127).to(torch.float32)
    zero = torch.zeros(len(scale), dtype=torch.int32, device=w.device)
    module.weight.data = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def simulated_int8(net: nn.Module, batches: Iterable[torch.Tensor], scheme: Scheme) -> nn.Module:
    """An eval-mode copy of static `net` with int8 simulated (see the module's notes); `batches`
    are normalised image batches on the net's device, the activations' calibration."""
    sim = folded(net)
    layers = [m for m in sim.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    seen = {(id(m), side): [float("inf"), float("-inf")] for m in layers for side in ("in", "out")}

    def widen(key, x: torch.Tensor) -> None:
        seen[key][0] = min(seen[key][0], float(x.min()))
        seen[key][1] = max(seen[key][1], float(x.max()))

    hooks = [m.register_forward_pre_hook(lambda m, inputs: widen((id(m), "in"), inputs[0])) for m in layers]
    hooks += [m.register_forward_hook(lambda m, inputs, out: widen((id(m), "out"), out)) for m in layers]
    with torch.no_grad():
        for batch in batches:
            sim(batch)
    for hook in hooks:
        hook.remove()
    for m in layers:
        if seen[(id(m), "in")][0] > seen[(id(m), "in")][1]:  # never ran on the calibration batches
            continue
        before, after = (_fake(*seen[(id(m), side)], scheme) for side in ("in", "out"))
        m.register_forward_pre_hook(lambda _m, inputs, q=before: (q(inputs[0]), *inputs[1:]))
        m.register_forward_hook(lambda _m, _inputs, out, q=after: q(out))
        _weights_int8(m)
    return sim
