"""BiSeNet's auxiliary heads for "segmentation+aux" (Yu et al., 2018, Section 3.3; MoSegNAS, Lu et
al., Fig. 1, fixes its decoder to BiSeNet's heads).

The main head is the saliency decoder with class logits (`SearchSpace._decoder_signatures`). In
training only, BiSeNet supervises the context path's 1/16 and 1/32 features with auxiliary heads
(its `BiSeNetOutput`: conv3x3-BN-ReLU to `AUX_WIDTH` channels, then a 1x1 conv to the classes), each
weighted 1 in the loss (BiSeNet Eq. 2, alpha = 1). Here they read the encoder's deepest tap and the
last conv; they are not part of the inference graph, so neither the latency table nor an export has them.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.nn.blocks import ConvBnAct, DynamicConvBnAct

AUX_WIDTH = 64  # BiSeNet's `BiSeNetOutput(..., mid_chan=64, ...)` for the auxiliary heads


class AuxHead(nn.Module):
    """A static head (BiSeNet's `BiSeNetOutput`): conv3x3-BN-ReLU to `width` (an auxiliary head's
    `AUX_WIDTH`), then a 1x1 conv (with bias) to the classes."""

    def __init__(self, cin: int, classes: int, width: int = AUX_WIDTH):
        super().__init__()
        self.conv = ConvBnAct(cin, width, 3)
        self.out = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x))


class DynamicAuxHead(nn.Module):
    """An auxiliary head whose input width follows the active encoder (the first columns of its conv)."""

    def __init__(self, in_max: int, classes: int):
        super().__init__()
        self.conv = DynamicConvBnAct(in_max, AUX_WIDTH, 3)
        self.out = nn.Conv2d(AUX_WIDTH, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x, AUX_WIDTH, 3))

    def extract(self, cin: int) -> AuxHead:
        head = AuxHead(cin, self.out.out_channels)
        head.conv = self.conv.extract(cin, AUX_WIDTH, 3)
        head.out.load_state_dict(self.out.state_dict())
        return head
