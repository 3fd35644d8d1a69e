"""MoSegNAS's encoder layers (Lu et al., Section III-B and Fig. 1), static and dynamic: the stem (a
conv, then ResNet's 3x3/2 max pool) and ResNet's residual layers, the bottleneck (1x1 compress,
3x3, 1x1 expand) and the basic layer (two 3x3s), each with an intermediate width of its own.

Built as torchvision's ResNet v1.5 and BiSeNet's ResNet-18 (CoinCheung/BiSeNet `lib/models/resnet.py`)
build them: BN after every conv, the activation after the sum, the stride on the 3x3, and a
1x1/stride conv + BN on the shortcut where the widths or the size change. The dynamic layers slice
one max-size weight per conv (the first channels, the centre of the stem's kernel), as the MBConv
blocks do, and `extract` returns the static layer with the active slice copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.nn.blocks import ConvBnAct, DynamicConvBnAct, drop_connect, make_act
from hwnas.space.signature import BlockSignature


def _convs(sig: BlockSignature) -> list[tuple[int, int, int, int, str | None]]:
    """(cin, cout, kernel, stride, act) of a residual layer's branch."""
    mid, act = sig.mid, sig.act
    if sig.op == "bottleneck":
        return [(sig.cin, mid, 1, 1, act), (mid, mid, 3, sig.stride, act), (mid, sig.cout, 1, 1, None)]
    return [(sig.cin, mid, 3, sig.stride, act), (mid, sig.cout, 3, 1, None)]


class ConvPool(nn.Sequential):
    """A residual space's stem: ConvBnAct, then ResNet's 3x3/2 max pool (padding 1)."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.conv = ConvBnAct(sig.cin, sig.cout, sig.kernel, sig.stride, sig.act)
        self.pool = nn.MaxPool2d(3, 2, 1)


class ResidualLayer(nn.Module):
    """ResNet's bottleneck or basic layer: act(branch(x) + shortcut(x))."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.branch = nn.Sequential(*(ConvBnAct(*conv) for conv in _convs(sig)))
        self.shortcut = ConvBnAct(sig.cin, sig.cout, 1, sig.stride, None) if sig.shortcut_conv else nn.Identity()
        self.act = make_act(sig.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class DynamicConvPool(nn.Module):
    """The stem in a supernet: elastic width and kernel (the centre of the largest), then the pool."""

    def __init__(self, out_max: int, kernel_max: int, stride: int, act: str):
        super().__init__()
        self.conv = DynamicConvBnAct(3, out_max, kernel_max, stride, act)

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:
        return F.max_pool2d(self.conv(x, sig.cout, sig.kernel), 3, 2, 1)

    def extract(self, sig: BlockSignature) -> ConvPool:
        out = ConvPool(sig)
        out.conv = self.conv.extract(sig.cin, sig.cout, sig.kernel)
        return out


class DynamicResidualLayer(nn.Module):
    """A residual layer whose input, intermediate and output widths a signature chooses; `first`
    (a stage's first layer) holds the shortcut conv."""

    def __init__(self, *, op: str, in_max: int, out_max: int, mid_max: int, stride: int, act: str, first: bool):
        super().__init__()
        widest = BlockSignature(op, 1, 1, in_max, out_max, 3, stride, mid_max, act=act)
        self.branch = nn.ModuleList(DynamicConvBnAct(cin, cout, k, s, a) for cin, cout, k, s, a in _convs(widest))
        self.shortcut = DynamicConvBnAct(in_max, out_max, 1, stride, None) if first else None
        self.act = make_act(act)

    def forward(self, x: torch.Tensor, sig: BlockSignature, drop: float = 0.0) -> torch.Tensor:
        """`drop`: drop-connect on the branch in training, where the shortcut is the identity."""
        y = x
        for conv, (_, cout, kernel, _, _) in zip(self.branch, _convs(sig), strict=True):
            y = conv(y, cout, kernel)
        if drop > 0 and self.training and not sig.shortcut_conv:
            y = drop_connect(y, drop)
        return self.act(y + (self.shortcut(x, sig.cout, 1) if sig.shortcut_conv else x))

    def extract(self, sig: BlockSignature) -> ResidualLayer:
        out = ResidualLayer(sig)
        for i, (conv, (cin, cout, kernel, _, _)) in enumerate(zip(self.branch, _convs(sig), strict=True)):
            out.branch[i] = conv.extract(cin, cout, kernel)
        if sig.shortcut_conv:
            out.shortcut = self.shortcut.extract(sig.cin, sig.cout, 1)
        return out
