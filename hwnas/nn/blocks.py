"""Blocks of the supernet, each in two forms: dynamic (slices shared weights) and static.

A dynamic block runs any `BlockSignature` its maximum shape admits and `extract(sig)` returns the
static block for that signature with the weights copied; `hwnas.nn.static.build_block(sig)` builds
the same static block with fresh weights, so the latency table measures exactly the modules an
extracted subnet holds. Static blocks contain only `torch.nn` layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.nn.dynamic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    DynamicSE,
    SqueezeExcite,
)
from hwnas.signature import BlockSignature, make_divisible


def make_act(name: str | None) -> nn.Module:
    """A fresh activation module by name (`relu`, `hswish`, `swish`, `sigmoid`, None)."""
    table = {"relu": nn.ReLU, "hswish": nn.Hardswish, "swish": nn.SiLU, "sigmoid": nn.Sigmoid}
    return nn.Identity() if name is None else table[name]()


# --------------------------------------------------------------------------------------------
# Static blocks
# --------------------------------------------------------------------------------------------
class ConvBnAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, act: str | None = "relu", depthwise: bool = False
    ):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=cin if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = make_act(act)


class MBConv(nn.Module):
    """MobileNetV3 inverted residual: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        mid = sig.mid
        self.expand = nn.Identity() if sig.expansion == 1 else ConvBnAct(sig.cin, mid, 1, act=sig.act)
        self.depthwise = ConvBnAct(mid, mid, sig.kernel, sig.stride, act=sig.act, depthwise=True)
        self.se = SqueezeExcite(mid, sig.se_mid) if sig.se else nn.Identity()
        self.project = ConvBnAct(mid, sig.cout, 1, act=None)
        self.residual = sig.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class DecoderStep(nn.Module):
    """Concatenate an encoder skip (if any), conv kxk + BN + act, then resize (if a size is given)."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.conv = ConvBnAct(sig.cin + sig.skip, sig.cout, sig.kernel, act=sig.act)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = torch.cat((x, skip), 1)
        x = self.conv(x)
        return x if size is None else resize(x, size)


class LinearHead(nn.Sequential):
    """Global average pool -> flatten -> linear (the classification head)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(cin, cout)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to `size` (identity when the size already matches)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------
# Dynamic blocks
# --------------------------------------------------------------------------------------------
class DynamicConvBnAct(nn.Module):
    def __init__(
        self,
        in_max: int,
        out_max: int,
        kernel_max: int,
        stride: int = 1,
        act: str | None = "relu",
        depthwise: bool = False,
    ):
        super().__init__()
        self.conv = DynamicConv2d(in_max, out_max, kernel_max, stride=stride, depthwise=depthwise)
        self.bn = DynamicBatchNorm2d(out_max)
        self.act = make_act(act)
        self.act_name = act

    def forward(self, x: torch.Tensor, cout: int, kernel: int) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, cout, kernel)))

    def extract(self, cin: int, cout: int, kernel: int) -> ConvBnAct:
        cout = cin if self.conv.depthwise else cout
        out = ConvBnAct(cin, cout, kernel, self.conv.stride, self.act_name, self.conv.depthwise)
        out.conv = self.conv.extract(cin, cout, kernel)
        out.bn = self.bn.extract(cout)
        return out


class DynamicConvBlock(DynamicConvBnAct):
    """The stem and the last conv: a conv-BN-act block driven by a signature (op `conv`)."""

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, sig.cout, sig.kernel)

    def extract(self, sig: BlockSignature) -> ConvBnAct:  # type: ignore[override]
        return super().extract(sig.cin, sig.cout, sig.kernel)


class DynamicMBConv(nn.Module):
    """Elastic MBConv block: width, kernel and expansion chosen per call by a signature."""

    def __init__(
        self,
        in_max: int,
        out_max: int,
        kernels: tuple[int, ...],
        expansions: tuple[int, ...],
        stride: int,
        se: bool,
        act: str,
    ):
        super().__init__()
        mid_max = make_divisible(in_max * max(expansions)) if max(expansions) > 1 else in_max
        self.expand = DynamicConvBnAct(in_max, mid_max, 1, act=act) if max(expansions) > 1 else None
        self.depthwise = DynamicConvBnAct(mid_max, mid_max, max(kernels), stride, act, depthwise=True)
        self.se = DynamicSE(mid_max) if se else None
        self.project = DynamicConvBnAct(mid_max, out_max, 1, act=None)

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:
        y = x if sig.expansion == 1 else self.expand(x, sig.mid, 1)
        y = self.depthwise(y, sig.mid, sig.kernel)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, sig.cout, 1)
        return x + y if sig.residual else y

    def extract(self, sig: BlockSignature) -> MBConv:
        out = MBConv(sig)
        if sig.expansion != 1:
            out.expand = self.expand.extract(sig.cin, sig.mid, 1)
        out.depthwise = self.depthwise.extract(sig.mid, sig.mid, sig.kernel)
        if sig.se:
            out.se = self.se.extract(sig.mid)
        out.project = self.project.extract(sig.mid, sig.cout, 1)
        return out


class DynamicDecoderStep(nn.Module):
    """Decoder step whose input, skip and output widths follow the active encoder.

    The up-path and the skip slice separate column ranges of one weight (`[:c_x]` and
    `[x_max : x_max + c_skip]`), so each keeps its own weights whatever the other's width.
    """

    def __init__(self, in_max: int, skip_max: int, out_max: int, kernel: int, act: str):
        super().__init__()
        self.in_max, self.skip_max = in_max, skip_max
        self.conv = DynamicConv2d(in_max + skip_max, out_max, kernel)
        self.bn = DynamicBatchNorm2d(out_max)
        self.act_name = act
        self.act = make_act(act)

    def _weight(self, sig: BlockSignature) -> torch.Tensor:
        w = self.conv.active_weight(self.in_max + self.skip_max, sig.cout, sig.kernel)
        if sig.cin > self.in_max or sig.skip > self.skip_max:
            raise ValueError(f"decoder step {sig.key} exceeds the supernet's maximum widths")
        return torch.cat((w[:, : sig.cin], w[:, self.in_max : self.in_max + sig.skip]), 1)

    def forward(
        self,
        x: torch.Tensor,
        sig: BlockSignature,
        skip: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        if skip is not None:
            x = torch.cat((x, skip), 1)
        x = F.conv2d(x, self._weight(sig), None, 1, sig.kernel // 2)
        x = self.act(self.bn(x))
        return x if size is None else resize(x, size)

    def extract(self, sig: BlockSignature) -> DecoderStep:
        out = DecoderStep(sig)
        with torch.no_grad():
            out.conv.conv.weight.copy_(self._weight(sig))
        out.conv.bn = self.bn.extract(sig.cout)
        return out


class DynamicLinearHead(nn.Module):
    def __init__(self, in_max: int, num_classes: int):
        super().__init__()
        self.linear = DynamicLinear(in_max, num_classes)

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:
        return self.linear(x.mean((2, 3)))

    def extract(self, sig: BlockSignature) -> LinearHead:
        out = LinearHead(sig.cin, sig.cout)
        out.linear = self.linear.extract(sig.cin)
        return out
