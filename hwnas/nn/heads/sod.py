"""FocusNet's salient-object-detection head (Zhou et al., 2024) on any subnet of the space.

- AFE, Ascending Feature Enhancement (Section 3.2): lateral 1x1 convolutions bring the encoder's
  level features s1..sL (the stem, the last stage of each resolution level, the last conv) to
  `WIDTH` channels; CFEM modules then run bottom-up, Eq. (1) CFEM_1(s1, s2) and Eq. (2)
  CFEM_i(s_i^shallow, s_{i+1}), each yielding s_i^deep and s_{i+1}^shallow. The top-down fusion
  concatenates, at every level but the first and last, s_i^deep and s_i^shallow with the
  upsampled deeper result and fuses them by a 1x1 convolution; the result is combined with s1^deep
  and upsampled to the input size, where a 3x3 convolution gives the one-channel map.
- The ablation of Table 2: decoder "unet" (the baseline: laterals and a U-Net fusion), "cfem"
  (CFEM on each pair of adjacent raw levels, no ascending chain), "afe" (the chain of Eq. 1-2).
- FOCUS (Section 3.1, switchable): a localization backbone of the same arch runs first; an
  auxiliary 1x1 convolution on its deepest feature is trained against the downscaled mask (BCE,
  Eq. 3), and the FRM channel-weights that feature, upsamples it to the stem's output, adjusts its
  channels by a 1x1 convolution and adds it to the feature backbone's stem output (the "Low +
  CA(High)" FRM of Table 3).

The head's variant and block signatures are `hwnas.space.tasks` (no torch needed to cost an arch).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from hwnas.nn.blocks import ConvBnAct, DynamicConvBnAct, resize
from hwnas.nn.dynamic import DynamicSE, SqueezeExcite
from hwnas.space.signature import BlockSignature
from hwnas.space.tasks import WIDTH, SodHead


class CFEM(nn.Module):
    """Cross-layer Feature Enhancement Module (FocusNet Fig. 5, Eq. 1-2): what two adjacent levels
    share (their product, at each one's scale) is added back to each, then a 3x3 conv-BN-ReLU per
    level: (a, b) -> (a^deep at a's scale, b^shallow at b's scale)."""

    def __init__(self, channels: int = WIDTH):
        super().__init__()
        self.to_shallow_level = ConvBnAct(channels, channels, 3)
        self.to_deep_level = ConvBnAct(channels, channels, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        common = a * resize(b, tuple(a.shape[-2:]))
        return self.to_shallow_level(a + common), self.to_deep_level(b + resize(common, tuple(b.shape[-2:])))


class FRM(nn.Module):
    """Feature Refine Module (FocusNet Fig. 2): channel weighting (squeeze-excitation) of the deep
    localization feature, 1x1 conv + BN to the shallow width, bilinear upsampling to (out_h, out_w).

    FocusNet draws the 1x1 conv after the upsampling; run before it, the same linear map costs the
    deep resolution's pixels instead of the stem's (0.009 instead of 1.78 GFLOPs at the largest
    alphanet `sod+focus` subnet). In eval mode the two orders give the same output: a 1x1 conv and
    BN's affine map act per pixel and bilinear weights sum to 1, so they commute with the upsampling;
    in training BN's batch statistics are taken at the deep resolution."""

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.weigh = SqueezeExcite(sig.cin, sig.se_mid)
        self.adjust = ConvBnAct(sig.cin, sig.cout, 1, act=None)
        self.size = (sig.out_h, sig.out_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(self.adjust(self.weigh(x)), self.size)


class DynamicFRM(nn.Module):
    """The FRM over elastic widths: input = the last conv's width, output = the stem's."""

    def __init__(self, in_max: int, out_max: int):
        super().__init__()
        self.weigh = DynamicSE(in_max)
        self.adjust = DynamicConvBnAct(in_max, out_max, 1, act=None)

    def forward(self, x: torch.Tensor, sig: BlockSignature) -> torch.Tensor:
        return resize(self.adjust(self.weigh(x), sig.cout, 1), (sig.out_h, sig.out_w))

    def extract(self, sig: BlockSignature) -> FRM:
        out = FRM(sig)
        out.weigh = self.weigh.extract(sig.cin)
        out.adjust = self.adjust.extract(sig.cin, sig.cout, 1)
        return out


class Fixed(nn.Module):
    """A head block whose shape does not depend on the arch (CFEM, fusion steps): the supernet
    calls it as is (the signature only names its cost) and extracts a copy."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, *args, sig: BlockSignature | None = None, **kwargs):
        return self.block(*args, **kwargs)

    def extract(self, sig: BlockSignature) -> nn.Module:
        return copy.deepcopy(self.block)


def decode_sod(
    head: SodHead,
    levels: Sequence[torch.Tensor],
    laterals: Sequence[Callable],
    cfems: Sequence[Callable],
    steps: Sequence[Callable],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """The SOD decoder over encoder levels (shallow to deep): laterals, CFEMs, top-down fusion."""
    lat = [lateral(f) for lateral, f in zip(laterals, levels, strict=True)]
    n = len(lat)
    if head.decoder == "unet":
        top, skips = lat[-1], lat[:-1]
    else:
        deep, shallow = [None] * n, [None] * n
        a = lat[0]
        for i in range(n - 1):
            deep[i], shallow[i + 1] = cfems[i](a if head.decoder == "afe" else lat[i], lat[i + 1])
            a = shallow[i + 1]
        top = shallow[-1]
        skips = [deep[0], *(torch.cat((deep[i], shallow[i]), 1) for i in range(1, n - 1))]
    sizes = [tuple(f.shape[-2:]) for f in levels[:-1]]
    x = steps[0](top, None, sizes[-1])
    for j, level in enumerate(range(n - 2, -1, -1)):
        x = steps[1 + j](x, skips[level], sizes[level - 1] if level else tuple(image_size))
    return steps[-1](x, None, None)
