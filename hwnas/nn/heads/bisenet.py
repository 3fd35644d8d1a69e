"""BiSeNet's heads (Yu et al., ECCV 2018, Section 3 and Fig. 2), the decoder MoSegNAS fixes (Lu et
al., Section III-B and Fig. 1: "we fix the decoder to the efficient segmentation heads from BiSeNet").

Built as the BiSeNet reference implementation builds BiSeNetV1 (CoinCheung/BiSeNet,
`lib/models/bisenetv1.py`), and checked against it on identical weights
(`tests/test_bisenet.py`, fixture from `tools/bisenet_fixtures.py`), given the encoder's 1/16 and
1/32 features:

- global context: the mean of the 1/32 features, a 1x1 ConvBnAct to `WIDTH` channels;
- attention refinement (ARM) of the 1/32 features: a 3x3 ConvBnAct to `WIDTH`, multiplied by its
  channel attention (global mean, 1x1 conv, BN, sigmoid); plus the global context, upsampled x2
  (nearest) and a 3x3 ConvBnAct: the context at 1/16; the same ARM of the 1/16 features plus that,
  upsampled x2 and a 3x3 ConvBnAct: the context at 1/8;
- the spatial path: the image through 7x7/2, 3x3/2, 3x3/2 ConvBnActs to 64 channels and a 1x1 one to
  `WIDTH`: the image at 1/8;
- feature fusion (FFM): the two 1/8 features concatenated, a 1x1 ConvBnAct to `2 x WIDTH`, plus
  itself times its channel attention (global mean, 1x1 conv, BN, sigmoid);
- the prediction at 1/8 (3x3 ConvBnAct to `2 x WIDTH`, 1x1 conv with bias to the classes),
  upsampled bilinearly to the input; in training also the two auxiliary heads on the context at
  1/8 and at 1/16 (BiSeNet Eq. 2, `hwnas.nn.heads.segmentation.AuxHead`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.nn.blocks import ConvBnAct
from hwnas.nn.heads.segmentation import AuxHead
from hwnas.space.signature import BISENET_SPATIAL, BISENET_WIDTH, BlockSignature

WIDTH = BISENET_WIDTH  # the context and spatial paths' channels (BiSeNetV1's ContextPath and SpatialPath)
SPATIAL_WIDTH = BISENET_SPATIAL  # the spatial path's first three convolutions


class ChannelAttention(nn.Module):
    """x times sigmoid(BN(conv1x1(mean over the map of x))): BiSeNet's ARM and FFM attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bn(self.conv(x.mean(dim=(2, 3), keepdim=True))).sigmoid()


class AttentionRefinement(nn.Module):
    """BiSeNet's ARM: a 3x3 ConvBnAct, then its channel attention."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBnAct(cin, cout, 3)
        self.attention = ChannelAttention(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(x))


class FeatureFusion(nn.Module):
    """BiSeNet's FFM: concatenation, a 1x1 ConvBnAct, plus itself under its channel attention."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBnAct(cin, cout, 1)
        self.attention = ChannelAttention(cout)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.cat([spatial, context], dim=1))
        return x + self.attention(x)


class BiSeNetHeads(nn.Module):
    """BiSeNetV1 without its backbone: `forward(image, at16, at32)` gives the class logits at the
    image's size, and in training also the two auxiliary heads' logits (at 1/8 and 1/16)."""

    def __init__(self, *, c16: int, c32: int, num_classes: int, aux: bool = True):
        super().__init__()
        self.global_context = ConvBnAct(c32, WIDTH, 1)
        self.arm32, self.arm16 = AttentionRefinement(c32, WIDTH), AttentionRefinement(c16, WIDTH)
        self.head32, self.head16 = ConvBnAct(WIDTH, WIDTH, 3), ConvBnAct(WIDTH, WIDTH, 3)
        self.spatial = nn.Sequential(
            ConvBnAct(3, SPATIAL_WIDTH, 7, 2),
            ConvBnAct(SPATIAL_WIDTH, SPATIAL_WIDTH, 3, 2),
            ConvBnAct(SPATIAL_WIDTH, SPATIAL_WIDTH, 3, 2),
            ConvBnAct(SPATIAL_WIDTH, WIDTH, 1),
        )
        self.ffm = FeatureFusion(2 * WIDTH, 2 * WIDTH)
        self.out = AuxHead(2 * WIDTH, num_classes, width=2 * WIDTH)
        self.aux8 = AuxHead(WIDTH, num_classes) if aux else None
        self.aux16 = AuxHead(WIDTH, num_classes) if aux else None

    def context(self, at16: torch.Tensor, at32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BiSeNet's context path on the encoder's features: the context at 1/8 and at 1/16."""
        glob = self.global_context(at32.mean(dim=(2, 3), keepdim=True))
        up16 = self.head32(F.interpolate(self.arm32(at32) + glob, size=at16.shape[-2:], mode="nearest"))
        size8 = (2 * at16.shape[-2], 2 * at16.shape[-1])
        up8 = self.head16(F.interpolate(self.arm16(at16) + up16, size=size8, mode="nearest"))
        return up8, up16

    def forward(self, image: torch.Tensor, at16: torch.Tensor, at32: torch.Tensor):
        context8, context16 = self.context(at16, at32)
        fused = self.ffm(self.spatial(image), context8)
        size = image.shape[-2:]
        logits = F.interpolate(self.out(fused), size=size, mode="bilinear", align_corners=False)
        if not self.training or self.aux8 is None:
            return logits
        aux = (self.aux8(context8), self.aux16(context16))
        return logits, *(F.interpolate(a, size=size, mode="bilinear", align_corners=False) for a in aux)


# the weights that read the encoder, and which of its widths slices their input channels
SLICED = {"global_context.conv.weight": "c32", "arm32.conv.conv.weight": "c32", "arm16.conv.conv.weight": "c16"}


class DynamicBiSeNetHeads(nn.Module):
    """BiSeNet's heads in a supernet: the three convs that read the encoder (the global context and
    the two ARMs) take the first `c16` / `c32` input channels of their max-width weights; everything
    else is fixed. Called with a `bisenet` signature (`cin` = c16, `skip` = c32)."""

    def __init__(self, *, c16: int, c32: int, num_classes: int, aux: bool):
        super().__init__()
        self.heads = BiSeNetHeads(c16=c16, c32=c32, num_classes=num_classes, aux=aux)

    def _sliced(self, c16: int, c32: int) -> dict[str, torch.Tensor]:
        params = dict(self.heads.named_parameters())
        widths = {"c16": c16, "c32": c32}
        return {name: params[name][:, : widths[width]] for name, width in SLICED.items()}

    def forward(self, image: torch.Tensor, at16: torch.Tensor, at32: torch.Tensor, sig: BlockSignature):
        sliced = self._sliced(sig.cin, sig.skip)
        return torch.func.functional_call(self.heads, sliced, (image, at16, at32))

    def extract(self, sig: BlockSignature) -> BiSeNetHeads:
        out = BiSeNetHeads(c16=sig.cin, c32=sig.skip, num_classes=sig.cout, aux=self.heads.aux8 is not None)
        state = self.heads.state_dict()
        state.update({name: w.detach() for name, w in self._sliced(sig.cin, sig.skip).items()})
        out.load_state_dict(state)
        return out
