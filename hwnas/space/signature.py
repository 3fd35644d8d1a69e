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

OPS = (
    "conv",
    "mbconv",
    "dec",
    "saldec",
    "blur",
    "mix",
    "linear",
    "cfem",
    "frm",
    "convpool",
    "bottleneck",
    "basic",
    "bisenet",
)
RESIDUAL_OPS = ("bottleneck", "basic")
BISENET_WIDTH, BISENET_SPATIAL = 128, 64  # BiSeNetV1's context/spatial path channels, its spatial path's first convs
BISENET_STRIDE = 32  # its deepest features' stride: inputs are multiples of it (the 1/8, 1/16, 1/32 maps meet)
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
      convpool a residual space's stem: conv kxk/stride + BN + act, then ResNet's 3x3/2 max pool
              (out_h x out_w is after the pool)
      bottleneck ResNet's bottleneck layer (MoSegNAS, Section III-B): 1x1 to `expansion` channels
              (the intermediate width, in channels), 3x3/stride, 1x1 to `cout` (BN after each, act
              after the first two), plus the shortcut, then act; the shortcut is the identity when
              stride is 1 and cin == cout, else a 1x1/stride conv + BN (torchvision's downsample)
      basic   ResNet's basic layer: 3x3/stride to `expansion` channels, 3x3 to `cout`, shortcut as
              `bottleneck`'s
      bisenet BiSeNetV1's heads (`hwnas.nn.heads.bisenet`) on an h x w image, its 1/16 features of
              `cin` channels and 1/32 features of `skip` channels, to `cout` class logits at h x w
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
        """Expanded channels of an MBConv block (the input channels when expansion is 1); a residual
        layer's intermediate width."""
        if self.op in RESIDUAL_OPS:
            return self.expansion
        return self.cin if self.expansion == 1 else make_divisible(self.cin * self.expansion)

    @property
    def se_mid(self) -> int:
        """Squeeze-excitation bottleneck width (reduction 4, divisible by 8; AttentiveNAS)."""
        return make_divisible(self.mid // 4)

    @property
    def shortcut_conv(self) -> bool:
        """Whether an MBConv block's shortcut holds a 1x1 conv (its widths differ); a residual
        layer's where it strides too (then with BN)."""
        if self.op in RESIDUAL_OPS:
            return self.cin != self.cout or self.stride > 1
        return self.op == "mbconv" and self.cin != self.cout

    # ---- cost -----------------------------------------------------------------------------
    def params(self) -> int:
        """Trainable parameters of the block (BN affine included, running stats excluded)."""
        k2 = self.kernel * self.kernel
        if self.op in ("conv", "convpool"):
            return k2 * self.cin * self.cout + 2 * self.cout
        if self.op in RESIDUAL_OPS or self.op == "bisenet":
            return self._residual_params() if self.op != "bisenet" else self._bisenet_params()
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
        if self.op == "convpool":
            h, w = spatial_after(self.h, self.w, self.kernel, self.stride)
            return 2 * h * w * self.cin * self.cout * k2
        if self.op in RESIDUAL_OPS:
            return self._residual_flops()
        if self.op == "bisenet":
            return self._bisenet_flops()
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

    def _residual_params(self) -> int:
        mid, shortcut = self.mid, (self.cin * self.cout + 2 * self.cout if self.shortcut_conv else 0)
        if self.op == "basic":
            return 9 * self.cin * mid + 2 * mid + 9 * mid * self.cout + 2 * self.cout + shortcut
        return self.cin * mid + 9 * mid * mid + mid * self.cout + 4 * mid + 2 * self.cout + shortcut

    def _residual_flops(self) -> int:
        mid, out = self.mid, self.out_h * self.out_w
        shortcut = 2 * out * self.cin * self.cout if self.shortcut_conv else 0
        if self.op == "basic":
            return 2 * out * 9 * (self.cin * mid + mid * self.cout) + shortcut
        return 2 * self.h * self.w * self.cin * mid + 2 * out * (9 * mid * mid + mid * self.cout) + shortcut

    def _bisenet_params(self) -> int:
        """`hwnas.nn.heads.bisenet.BiSeNetHeads` without the auxiliary heads (not in the inference graph)."""
        c, s, c16, c32, classes = BISENET_WIDTH, BISENET_SPATIAL, self.cin, self.skip, self.cout
        context = c32 * c + 2 * c + (9 * c32 + 9 * c16) * c + 2 * (c * c + 4 * c) + 2 * (9 * c * c + 2 * c)
        spatial = 49 * 3 * s + 2 * (9 * s * s) + 6 * s + s * c + 2 * c
        fusion = 8 * c * c + 8 * c
        out = 36 * c * c + 4 * c + 2 * c * classes + classes
        return context + spatial + fusion + out

    def _bisenet_flops(self) -> int:
        c, s, c16, c32, classes = BISENET_WIDTH, BISENET_SPATIAL, self.cin, self.skip, self.cout
        at16, at32 = (self.h // 16) * (self.w // 16), (self.h // 32) * (self.w // 32)
        h2, w2 = spatial_after(self.h, self.w, 7, 2)
        h4, w4 = spatial_after(h2, w2, 3, 2)
        h8, w8 = spatial_after(h4, w4, 3, 2)
        at8 = 4 * at16  # the context at 1/8 is the 1/16 map upsampled x2
        context = 2 * c32 * c + 2 * at32 * 9 * c32 * c + 2 * at16 * 9 * c16 * c + 4 * c * c
        context += 2 * (at16 + at8) * 9 * c * c
        spatial = 2 * h2 * w2 * 49 * 3 * s + 2 * (h4 * w4 + h8 * w8) * 9 * s * s + 2 * h8 * w8 * s * c
        fusion = 2 * h8 * w8 * 4 * c * c + 8 * c * c
        out = 2 * h8 * w8 * (36 * c * c + 2 * c * classes)
        return context + spatial + fusion + out

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
