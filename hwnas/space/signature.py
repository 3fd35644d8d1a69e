"""`BlockSignature`: the whole truth about one block's cost.

A latency table row is keyed by a signature; two archs that share a signature share its row.
Params and FLOPs are computed from the signature alone, so that the analytic counts of an arch are
the sum over its blocks (checked against the extracted module and `FlopCounterMode` in tests).

FLOPs follow `torch.utils.flop_counter.FlopCounterMode`: 2 per multiply-accumulate of convolutions
and linear layers, for batch 1; batch norm, activations, pooling, interpolation and additions are
not counted (they are memory-bound; the latency table measures them, the FLOP count does not).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

OPS = ("conv", "mbconv", "dec", "saldec", "blur", "mix", "linear", "cfem", "frm")
ACTIVATIONS = ("relu", "hswish", "swish", "sigmoid")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% down (MobileNetV2/OFA rule)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution with 'same' padding `kernel // 2`."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True, order=True)
class BlockSignature:
    """One block's shape: op kind, input H x W x C, output channels and hyper-parameters.

    op:
      conv    3x3/1x1 convolution + BN + activation (stem, last conv)
      mbconv  MobileNetV3 inverted residual: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1,
              plus AttentiveNAS's shortcut (`ShortcutLayer`): the identity when stride is 1 and
              cin == cout, else [2x2 average pooling when stride is 2] -> [bias-free 1x1 conv when
              cin != cout]
      dec     decoder step: [concat a `skip`-channel encoder feature] -> conv kxk + BN + act
              -> bilinear resize to out_h x out_w
      saldec  SalNAS's decoder step (`decode_output*` of its `AttentiveNasDynamicModel`): as `dec`,
              but the resize is `nn.UpsamplingBilinear2d` (align_corners=True)
      blur    SalNAS's eval-mode Gaussian blur of the saliency map (kornia `GaussianBlur2d`,
              `kernel` x `kernel`, sigma 10.5, reflect border), run as two 1-D passes
      mix     AlphaNet's v3-head feature mix: global average pool -> bias-free 1x1 conv -> act
      linear  classification head: global average pool + linear layer
      cfem    FocusNet's cross-layer feature enhancement of a level (h x w) and the next deeper one
              (out_h x out_w), `cin` = `cout` channels: two conv3x3-BN-ReLU after the shared product
      frm     FocusNet's feature refine module: squeeze-excitation on the deep feature (h x w x cin),
              conv1x1-BN to `cout` at h x w, bilinear upsampling to out_h x out_w
    """

    op: str
    h: int
    w: int
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    expansion: int = 1
    se: bool = False
    act: str = "relu"
    skip: int = 0
    out_h: int = 0
    out_w: int = 0

    # ---- derived shapes -------------------------------------------------------------------
    @property
    def mid(self) -> int:
        """Expanded channels of an MBConv block (the input channels when expansion is 1)."""
        return self.cin if self.expansion == 1 else make_divisible(self.cin * self.expansion)

    @property
    def se_mid(self) -> int:
        """Squeeze-excitation bottleneck width (reduction 4, divisible by 8; AttentiveNAS)."""
        return make_divisible(self.mid // 4)

    @property
    def shortcut_conv(self) -> bool:
        """Whether an MBConv block's shortcut holds a 1x1 conv (its widths differ)."""
        return self.op == "mbconv" and self.cin != self.cout

    # ---- cost -----------------------------------------------------------------------------
    def params(self) -> int:
        """Trainable parameters of the block (BN affine included, running stats excluded)."""
        k2 = self.kernel * self.kernel
        if self.op == "conv":
            return k2 * self.cin * self.cout + 2 * self.cout
        if self.op in ("dec", "saldec"):
            return k2 * (self.cin + self.skip) * self.cout + 2 * self.cout
        if self.op == "linear":
            return self.cin * self.cout + self.cout
        if self.op in ("mix", "blur"):
            return self.cin * self.cout if self.op == "mix" else 0
        if self.op == "cfem":
            return 2 * (k2 * self.cin * self.cout + 2 * self.cout)
        if self.op == "frm":
            return 2 * self.cin * self.se_mid + self.cin + self.se_mid + self.cin * self.cout + 2 * self.cout
        mid = self.mid
        total = 0 if self.expansion == 1 else self.cin * mid + 2 * mid
        total += k2 * mid + 2 * mid
        if self.se:
            total += 2 * mid * self.se_mid + mid + self.se_mid
        shortcut = self.cin * self.cout if self.shortcut_conv else 0
        return total + mid * self.cout + 2 * self.cout + shortcut

    def flops(self) -> int:
        """FLOPs for one image, in `FlopCounterMode`'s convention (2 x MACs of conv/linear)."""
        k2 = self.kernel * self.kernel
        if self.op == "conv":
            return 2 * self.out_h * self.out_w * self.cin * self.cout * k2
        if self.op in ("dec", "saldec"):
            return 2 * self.h * self.w * (self.cin + self.skip) * self.cout * k2
        if self.op in ("linear", "mix"):
            return 2 * self.cin * self.cout
        if self.op == "blur":  # a 1 x k pass over the reflect-padded rows, then a k x 1 pass
            return 2 * self.kernel * self.w * (2 * self.h + 2 * (self.kernel // 2))
        if self.op == "cfem":
            return 2 * k2 * self.cin * self.cout * (self.h * self.w + self.out_h * self.out_w)
        if self.op == "frm":
            return 4 * self.cin * self.se_mid + 2 * self.h * self.w * self.cin * self.cout
        mid = self.mid
        total = 0 if self.expansion == 1 else 2 * self.h * self.w * self.cin * mid
        total += 2 * self.out_h * self.out_w * mid * k2
        if self.se:
            total += 4 * mid * self.se_mid
        shortcut = 2 * self.out_h * self.out_w * self.cin * self.cout if self.shortcut_conv else 0
        return total + 2 * self.out_h * self.out_w * mid * self.cout + shortcut

    # ---- serialisation --------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable human-readable key, e.g. `mbconv_96x128x24_c32_k5_s2_e4_se1_swish_x0_o48x64`."""
        return (
            f"{self.op}_{self.h}x{self.w}x{self.cin}_c{self.cout}_k{self.kernel}_s{self.stride}"
            f"_e{self.expansion}_se{int(self.se)}_{self.act}_x{self.skip}_o{self.out_h}x{self.out_w}"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BlockSignature:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def spatial_after(h: int, w: int, kernel: int, stride: int) -> tuple[int, int]:
    return conv_out(h, kernel, stride), conv_out(w, kernel, stride)
