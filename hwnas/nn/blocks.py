"""Blocks of the supernet, each in two forms: dynamic (slices shared weights) and static.

A dynamic block runs any `BlockSignature` its maximum shape admits and `extract(sig)` returns the
static block for that signature with the weights copied; `hwnas.nn.static.build_block(sig)` builds
the same static block with fresh weights, so the latency table measures exactly the modules an
extracted subnet holds. Static blocks contain only `torch.nn` layers.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hwnas.nn.dynamic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    DynamicSE,
    SqueezeExcite,
)
from hwnas.space.signature import BlockSignature, make_divisible
from hwnas.space.tasks import BLUR_SIGMA


def make_act(name: str | None) -> nn.Module:
    """A fresh activation module by name (`relu`, `hswish`, `swish`, `sigmoid`; `identity` or None: none)."""
    table = {"relu": nn.ReLU, "hswish": nn.Hardswish, "swish": nn.SiLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
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


def folded(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a static model with every `ConvBnAct`'s BatchNorm folded into its conv
    (`torch.nn.utils.fusion.fuse_conv_bn_eval`): the same outputs to float rounding, no BatchNorm
    nodes for a converter to trace (litert-torch converts a folded alphanet subnet 1.55x faster,
    `bench.tflite_convert`) and none left for a runtime to fuse."""
    copy_ = copy.deepcopy(model).eval()
    for m in copy_.modules():
        if isinstance(m, ConvBnAct) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv, m.bn = fuse_conv_bn_eval(m.conv, m.bn), nn.Identity()
    return copy_


def _pool_padding(size: tuple[int, int]) -> tuple[int, int]:
    """The shortcut pooling's padding over an input of `size`: AttentiveNAS's `ShortcutLayer` pads
    one pixel when the width is odd, on both sides; this pads each odd side, the same wherever
    theirs runs (theirs fails on an odd height beside an even width)."""
    return size[0] % 2, size[1] % 2


def shortcut(sig: BlockSignature) -> nn.Module:
    """AttentiveNAS's `ShortcutLayer` (`models/modules/static_layers.py`) as plain layers: [average
    pooling when the block strides] -> [bias-free 1x1 conv when the widths differ]; the identity
    otherwise. Theirs always allocates the conv; this one only where it runs."""
    layers: list[nn.Module] = []
    if sig.stride > 1:
        layers.append(nn.AvgPool2d(sig.stride, padding=_pool_padding((sig.h, sig.w))))
    if sig.shortcut_conv:
        layers.append(nn.Conv2d(sig.cin, sig.cout, 1, bias=False))
    return nn.Sequential(*layers) if layers else nn.Identity()


class MBConv(nn.Module):
    """MobileNetV3 inverted residual: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1, plus
    AttentiveNAS's shortcut (`MobileInvertedResidualBlock`: every block adds one)."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        mid = sig.mid
        self.expand = nn.Identity() if sig.expansion == 1 else ConvBnAct(sig.cin, mid, 1, act=sig.act)
        self.depthwise = ConvBnAct(mid, mid, sig.kernel, sig.stride, act=sig.act, depthwise=True)
        self.se = SqueezeExcite(mid, sig.se_mid) if sig.se else nn.Identity()
        self.project = ConvBnAct(mid, sig.cout, 1, act=None)
        self.shortcut = shortcut(sig)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.depthwise(self.expand(x)))) + self.shortcut(x)


class DecoderStep(nn.Module):
    """Concatenate an encoder skip (if any), conv kxk + BN + act, then resize (if a size is given):
    bilinear, with align_corners=True for SalNAS's steps (op `saldec`, `nn.UpsamplingBilinear2d`)."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.conv = ConvBnAct(sig.cin + sig.skip, sig.cout, sig.kernel, act=sig.act)
        self.align_corners = sig.op == "saldec"

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = torch.cat((x, skip), 1)
        x = self.conv(x)
        return x if size is None else resize(x, size, align_corners=self.align_corners)


class GaussianBlur(nn.Module):
    """SalNAS's eval-mode blur of the saliency map: kornia `GaussianBlur2d((k, k), (10.5, 10.5))`
    with its reflect border (`salnas/models/attentive_nas_static_model.py`), as two 1-D passes;
    the identity in training mode, as theirs."""

    def __init__(self, kernel: int, sigma: float = BLUR_SIGMA):
        super().__init__()
        x = torch.arange(kernel, dtype=torch.float64) - kernel // 2  # kornia `get_gaussian_kernel1d`
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g = (g / g.sum()).float()
        self.pad = kernel // 2
        self.register_buffer("row", g.view(1, 1, 1, kernel), persistent=False)
        self.register_buffer("column", g.view(1, 1, kernel, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        p = self.pad
        y = F.pad(x, (p, p, p, p), mode="reflect")
        return F.conv2d(F.conv2d(y, self.row), self.column)


class FeatureMix(nn.Sequential):
    """AlphaNet's v3-head feature mix: global average pool -> bias-free 1x1 conv -> act."""

    def __init__(self, cin: int, cout: int, act: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.act = make_act(act)


class LinearHead(nn.Sequential):
    """Global average pool -> flatten -> linear (the classification head)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(cin, cout)


def resize(x: torch.Tensor, size: tuple[int, int], *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize to `size` (identity when the size already matches). With align_corners=True
    it is `nn.UpsamplingBilinear2d(scale_factor=2)` wherever `size` doubles the input."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


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


def drop_connect(x: torch.Tensor, p: float) -> torch.Tensor:
    """Drop whole samples of a residual branch with probability `p`, scaled by 1 / (1 - p)
    (once-for-all / AttentiveNAS `drop_connect`)."""
    keep = 1.0 - p
    mask = torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))
    return x / keep * mask


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
        first: bool,
    ):
        super().__init__()
        mid_max = make_divisible(in_max * max(expansions)) if max(expansions) > 1 else in_max
        self.expand = DynamicConvBnAct(in_max, mid_max, 1, act=act) if max(expansions) > 1 else None
        self.depthwise = DynamicConvBnAct(mid_max, mid_max, max(kernels), stride, act, depthwise=True)
        self.se = DynamicSE(mid_max) if se else None
        self.project = DynamicConvBnAct(mid_max, out_max, 1, act=None)
        self.stride = stride
        # AttentiveNAS's DynamicShortcutLayer: a 1x1 conv where the widths can differ (a stage's first block)
        self.shortcut = DynamicConv2d(in_max, out_max, 1) if first else None

    def forward(self, x: torch.Tensor, sig: BlockSignature, drop: float = 0.0) -> torch.Tensor:
        """`drop`: drop-connect rate on the block's branch, applied in training where the shortcut is
        the identity (AttentiveNAS `MobileInvertedResidualBlock`)."""
        y = x if sig.expansion == 1 else self.expand(x, sig.mid, 1)
        y = self.depthwise(y, sig.mid, sig.kernel)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, sig.cout, 1)
        if drop > 0 and self.training and self.stride == 1 and not sig.shortcut_conv:
            y = drop_connect(y, drop)
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, padding=_pool_padding(tuple(x.shape[-2:])))
        return y + (self.shortcut(x, sig.cout, 1) if sig.shortcut_conv else x)

    def extract(self, sig: BlockSignature) -> MBConv:
        out = MBConv(sig)
        if sig.expansion != 1:
            out.expand = self.expand.extract(sig.cin, sig.mid, 1)
        out.depthwise = self.depthwise.extract(sig.mid, sig.mid, sig.kernel)
        if sig.se:
            out.se = self.se.extract(sig.mid)
        out.project = self.project.extract(sig.mid, sig.cout, 1)
        if sig.shortcut_conv:
            out.shortcut[-1] = self.shortcut.extract(sig.cin, sig.cout, 1)
        return out


class DynamicDecoderStep(nn.Module):
    """Decoder step whose input, skip and output widths follow the active encoder.

    For `dec` the up-path and the skip slice separate column ranges of one weight (`[:c_x]` and
    `[x_max : x_max + c_skip]`), so each keeps its own weights whatever the other's width. SalNAS's
    steps (`saldec`) slice the first `c_x + c_skip` columns, as its `DynamicConvBnActLayer` does.
    """

    def __init__(self, in_max: int, skip_max: int, out_max: int, kernel: int, act: str, *, op: str = "dec"):
        super().__init__()
        self.in_max, self.skip_max, self.op = in_max, skip_max, op
        self.conv = DynamicConv2d(in_max + skip_max, out_max, kernel)
        self.bn = DynamicBatchNorm2d(out_max)
        self.act_name = act
        self.act = make_act(act)

    def _weight(self, sig: BlockSignature) -> torch.Tensor:
        w = self.conv.active_weight(self.in_max + self.skip_max, sig.cout, sig.kernel)
        if sig.cin > self.in_max or sig.skip > self.skip_max:
            raise ValueError(f"decoder step {sig.key} exceeds the supernet's maximum widths")
        if self.op == "saldec":
            return w[:, : sig.cin + sig.skip]
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
        return x if size is None else resize(x, size, align_corners=self.op == "saldec")

    def extract(self, sig: BlockSignature) -> DecoderStep:
        out = DecoderStep(sig)
        with torch.no_grad():
            out.conv.conv.weight.copy_(self._weight(sig))
        out.conv.bn = self.bn.extract(sig.cout)
        return out


class DynamicBlur(nn.Module):
    """The saliency head's blur in the supernet: nothing elastic, called like a decoder step."""

    def __init__(self, kernel: int):
        super().__init__()
        self.blur = GaussianBlur(kernel)

    def forward(self, x: torch.Tensor, sig: BlockSignature, skip: None = None, size: None = None) -> torch.Tensor:
        return self.blur(x)

    def extract(self, sig: BlockSignature) -> GaussianBlur:
        return GaussianBlur(sig.kernel).train(self.training)


class DynamicFeatureMix(nn.Module):
    """AlphaNet's feature mix over elastic widths (its `feature_mix_layer`, `use_bn=False`)."""

    def __init__(self, in_max: int, out_max: int, act: str):
        super().__init__()
        self.conv = DynamicConv2d(in_max, out_max, 1)
        self.act, self.act_name = make_act(act), act

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:
        return self.act(self.conv(x.mean((2, 3), keepdim=True), sig.cout, 1))

    def extract(self, sig: BlockSignature) -> FeatureMix:
        out = FeatureMix(sig.cin, sig.cout, self.act_name)
        out.conv = self.conv.extract(sig.cin, sig.cout, 1)
        return out


class DynamicLinearHead(nn.Module):
    def __init__(self, in_max: int, num_classes: int):
        super().__init__()
        self.linear = DynamicLinear(in_max, num_classes)

    def forward(self, x: torch.Tensor, sig: BlockSignature, dropout: float = 0.0) -> torch.Tensor:
        """`dropout` on the pooled features, in training (AttentiveNAS's `active_dropout_rate`)."""
        y = x.mean((2, 3))
        return self.linear(F.dropout(y, dropout, training=True) if dropout > 0 and self.training else y)

    def extract(self, sig: BlockSignature) -> LinearHead:
        out = LinearHead(sig.cin, sig.cout)
        out.linear = self.linear.extract(sig.cin)
        return out
