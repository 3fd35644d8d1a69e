"""Static blocks with fresh weights, one per `BlockSignature`, and the standalone models the latency
table times (`SignatureModel`, `IdentityModel`). It sits above `blocks` and the SOD head's modules,
which it builds from, so neither imports the other.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.nn.blocks import ConvBnAct, DecoderStep, FeatureMix, GaussianBlur, LinearHead, MBConv
from hwnas.nn.heads.bisenet import BiSeNetHeads
from hwnas.nn.heads.sod import CFEM, FRM
from hwnas.nn.residual import ConvPool, ResidualLayer
from hwnas.space.signature import BlockSignature


def build_block(sig: BlockSignature) -> nn.Module:
    """A static block with fresh weights for one signature (what the latency table measures)."""
    if sig.op == "conv":
        return ConvBnAct(sig.cin, sig.cout, sig.kernel, sig.stride, sig.act)
    if sig.op == "mbconv":
        return MBConv(sig)
    if sig.op in ("dec", "saldec"):
        return DecoderStep(sig)
    if sig.op == "blur":
        return GaussianBlur(sig.kernel)
    if sig.op == "mix":
        return FeatureMix(sig.cin, sig.cout, sig.act)
    if sig.op == "linear":
        return LinearHead(sig.cin, sig.cout)
    if sig.op in ("cfem", "frm"):
        return CFEM(sig.cin) if sig.op == "cfem" else FRM(sig)
    if sig.op in ("bottleneck", "basic"):
        return ResidualLayer(sig)
    if sig.op == "convpool":
        return ConvPool(sig)
    if sig.op == "bisenet":  # the inference graph: no auxiliary heads
        return BiSeNetHeads(c16=sig.cin, c32=sig.skip, num_classes=sig.cout, aux=False)
    raise ValueError(f"unknown block op {sig.op!r}")


# --------------------------------------------------------------------------------------------
class SignatureModel(nn.Module):
    """One block as a model with tensor inputs only: what backends compile and the table times.

    A decoder step takes its skip as a second input and resizes to the signature's output size; a
    CFEM takes the deeper level as its second input and returns both enhanced levels; BiSeNet's
    heads take the image and the 1/16 and 1/32 features.
    """

    def __init__(self, sig: BlockSignature):
        super().__init__()
        self.block = build_block(sig)
        self.op, self.size = sig.op, (sig.out_h, sig.out_w)

    def forward(self, x: torch.Tensor, *more: torch.Tensor):
        if self.op in ("dec", "saldec"):
            return self.block(x, more[0] if more else None, self.size)
        return self.block(x, *more)


def signature_inputs(sig: BlockSignature, batch: int = 1) -> list[tuple[int, ...]]:
    """Input shapes of `SignatureModel(sig)`."""
    shapes = [(batch, sig.cin, sig.h, sig.w)]
    if sig.op in ("dec", "saldec") and sig.skip:
        shapes.append((batch, sig.skip, sig.h, sig.w))
    if sig.op == "cfem":
        shapes.append((batch, sig.cout, sig.out_h, sig.out_w))
    if sig.op == "bisenet":  # the image, then the encoder's 1/16 and 1/32 features
        shapes = [(batch, 3, sig.h, sig.w), (batch, sig.cin, sig.h // 16, sig.w // 16)]
        shapes.append((batch, sig.skip, sig.h // 32, sig.w // 32))
    return shapes


class IdentityModel(nn.Module):
    """A near-empty model (one add) whose time on a backend is its per-call overhead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class ChannelsLastIO(nn.Module):
    """`module` taking and returning channels-last (NHWC) 4-D tensors: a runtime that computes
    channels-last inside cancels these permutes against its own layout changes, as it does between
    the blocks of a whole model, instead of paying them at every block model's edges."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor):
        outputs = self.module(*[x.permute(0, 3, 1, 2) if x.dim() == 4 else x for x in inputs])
        if isinstance(outputs, tuple):
            return tuple(y.permute(0, 2, 3, 1) if y.dim() == 4 else y for y in outputs)
        return outputs.permute(0, 2, 3, 1) if outputs.dim() == 4 else outputs


def channels_last_shapes(shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """NCHW input shapes as `ChannelsLastIO` takes them (other ranks unchanged)."""
    return [(s[0], s[2], s[3], s[1]) if len(s) == 4 else tuple(s) for s in shapes]
