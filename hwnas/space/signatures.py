"""The blocks of an arch: each block's `BlockSignature` in execution order, and the slots that say
which genes decide each position's signature. Latency tables, params and FLOPs are sums over these.

`block_signatures(space, arch, task)` lists a subnet's blocks: stem `conv`, one `mbconv` per active
block, the last `conv`, then the head: `linear` (or `mix` then `linear` in a space with feature-mix
widths); SalNAS's decoder steps (`saldec`) and, for `saliency`, the eval `blur`; or FocusNet's SOD
head (laterals, CFEMs, fusion steps, and with FOCUS a second encoder and the FRM). The supernet runs
each dynamic block with its signature and `hwnas.nn.static.build_block(sig)` builds the same block,
so one signature is one truth for a block's cost.

A residual space (MoSegNAS's, `SearchSpace.residual`) lists its stem (`convpool`), one `bottleneck`
or `basic` per active layer and no last conv; then `linear`, or for segmentation BiSeNet's heads as
one `bisenet` block on the image and the last two stages' outputs (the constant "tail and decoder"
of MoSegNAS Eq. 7, constant given those widths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwnas.errors import ArchError
from hwnas.space.arch import Arch
from hwnas.space.signature import BlockSignature, spatial_after
from hwnas.space.tasks import BLUR_KERNEL, WIDTH, SodHead, blurs, check_task, default_classes, is_segmentation, is_sod

if TYPE_CHECKING:
    from hwnas.space.search_space import SearchSpace


@dataclass(frozen=True)
class Slot:
    """A block position and the encoding genes that decide its signature (see `slots`)."""

    position: int
    genes: tuple[int, ...]
    depth_gene: int | None = None
    min_depth: int = 1


def _width_gene(space: SearchSpace, source: int) -> int:
    return space.gene("stem.width") if source == -1 else space.gene(f"stages[{source}].width")


def slots(space: SearchSpace, task: str = "saliency") -> list[Slot]:
    """Every block position of a max-depth subnet with the genes its signature depends on.

    `position` indexes `block_signatures()` of an arch whose stages are all at maximum depth;
    a block beyond a stage's depth is absent (`depth_gene`, `min_depth`).
    """
    res, last = space.gene("resolution"), _last_gene(space)
    _check_head(space, check_task(task))
    if is_sod(task):
        return _sod_slots(space, SodHead.parse(task))
    slots = _encoder_slots(space, 0)
    if task == "classification" and space.last.mix:
        mix = space.gene("last_conv.mix")
        return [*slots, Slot(len(slots), (res, last, mix)), Slot(len(slots) + 1, (mix,))]
    if task == "classification":
        return [*slots, Slot(len(slots), (res, last))]
    if space.residual:  # BiSeNet's heads: the image, the last two stages' widths
        deep = tuple(space.gene(f"stages[{i}].width") for i in (len(space.stages) - 2, len(space.stages) - 1))
        return [*slots, Slot(len(slots), (res, *deep))]
    taps = [_width_gene(space, s) for s in reversed(skip_sources(space))]  # deep first
    ups = [_width_gene(space, s) for s in up_sources(space)]
    stem = _width_gene(space, -1)
    steps = [(last, ups[0])] + [(ups[j - 1], taps[j - 1], ups[j]) for j in range(1, len(ups))]
    steps += [(ups[-1], stem), (stem,), (stem,)] + ([()] if blurs(task) else [])
    return slots + [Slot(len(slots) + j, tuple(dict.fromkeys((res, *g)))) for j, g in enumerate(steps)]


def _last_gene(space: SearchSpace) -> int:
    """The gene that decides the last conv's width: its own, or the last stage's when tied."""
    if space.last.expand is None:
        return space.gene("last_conv.width")
    return space.gene(f"stages[{len(space.stages) - 1}].width")


def _check_head(space: SearchSpace, task: str) -> None:
    if space.residual and task != "classification" and not is_segmentation(task):
        raise ArchError(
            f"space '{space.name}' is a residual space (MoSegNAS's), whose heads are a classifier or BiSeNet's "
            f"segmentation heads; the {task} head needs an MBConv space (e.g. alphanet)"
        )
    if space.last.mix and task != "classification":
        raise ArchError(
            f"space '{space.name}' has a classifier feature-mix layer (last_conv.mix), which the {task} head "
            "does not use; use a space without last_conv.mix (e.g. alphanet)"
        )


def _encoder_slots(space: SearchSpace, offset: int) -> list[Slot]:
    res = space.gene("resolution")
    stem = (space.gene("stem.width"), space.gene("stem.kernel")) if space.stem.kernels else (space.gene("stem.width"),)
    slots = [Slot(offset, (res, *stem))]
    prev = space.gene("stem.width")
    for i, spec in enumerate(space.stages):
        width = space.gene(f"stages[{i}].width")
        for b in range(1, max(spec.depths) + 1):  # b counts blocks from 1: the depth that switches it on
            own = space.block_genes(i, b - 1)
            genes = (res, prev, width, *own) if b == 1 else (res, width, *own)
            optional = b > min(spec.depths)
            depth_gene = space.gene(f"stages[{i}].depth") if optional else None
            slots.append(Slot(offset + len(slots), genes, depth_gene, b))
        prev = width
    if not space.residual:  # the last conv
        slots.append(Slot(offset + len(slots), tuple(dict.fromkeys((res, prev, _last_gene(space))))))
    return slots


def _sod_slots(space: SearchSpace, head: SodHead) -> list[Slot]:
    """Slots of `_sod_blocks`: [localization encoder, FRM,] encoder, laterals, CFEMs, fusion steps."""
    res, last, stem = space.gene("resolution"), _last_gene(space), space.gene("stem.width")
    slots = _encoder_slots(space, 0)
    if head.focus:
        slots += [Slot(len(slots), (res, last, stem))]
        slots += _encoder_slots(space, len(slots))
    levels = [_width_gene(space, s) for s in skip_sources(space)] + [last]
    genes = [(res, g) for g in levels]
    genes += [(res,)] * ((len(levels) - 1 if head.decoder != "unet" else 0) + len(levels) + 1)
    return slots + [Slot(len(slots) + j, g) for j, g in enumerate(genes)]


def slot_signatures(
    space: SearchSpace, slot: Slot, task: str = "saliency", num_classes: int | None = None
) -> dict[tuple, BlockSignature]:
    """The signature of `slot` for every combination of its genes' choice indices."""
    template = space.encode(space.max())
    radices = [len(space.variables[g][1]) for g in slot.genes]
    out = {}
    for combo in np.ndindex(*radices):
        x = template.copy()
        x[list(slot.genes)] = combo
        out[combo] = block_signatures(space, space.decode(x), task, num_classes)[slot.position]
    return out


def all_block_signatures(
    space: SearchSpace,
    resolutions: list[tuple[int, int]] | None = None,
    task: str = "saliency",
    num_classes: int | None = None,
) -> list[BlockSignature]:
    """Every distinct block signature the space can produce at the given resolutions (default: all)."""
    wanted = space.resolutions if resolutions is None else tuple(space.check_resolution(r) for r in resolutions)
    keep = {space.resolutions.index(r) for r in wanted}
    found: set[BlockSignature] = set()
    for slot in slots(space, task):
        found.update(sig for combo, sig in slot_signatures(space, slot, task, num_classes).items() if combo[0] in keep)
    return sorted(found)


def skip_sources(space: SearchSpace) -> list[int]:
    """Encoder features the saliency decoder concatenates, shallow to deep (-1 = the stem).

    SalNAS taps the stem and, for each deeper resolution level but the deepest, the last stage
    at that level; the deepest level enters through the last convolution. A residual space taps its
    second-to-last stage (BiSeNet's 1/16 features; the last stage's are the 1/32 ones).
    """
    if space.residual:
        return [len(space.stages) - 2]
    level = space.stem.stride
    last_at_level: dict[int, int] = {}
    for i, st in enumerate(space.stages):
        level *= st.stride
        last_at_level[level] = i
    deepest = max(last_at_level)
    return [-1] + [i for lv, i in sorted(last_at_level.items()) if lv not in (space.stem.stride, deepest)]


def up_sources(space: SearchSpace) -> list[int]:
    """Stages whose widths the saliency decoder's upsampling steps output, deep to shallow (-1 =
    the stem): at each level but the deepest, the last stage there. SalNAS's `decode_channel`
    (`salnas/models/attentive_nas_dynamic_model.py`): MBConv-5, -3, -2, -1; the stem's width
    comes last. MBConv-1's width is taken though the tap at that level is the stem's output."""
    level = space.stem.stride
    last_at_level = {level: -1}
    for i, st in enumerate(space.stages):
        level *= st.stride
        last_at_level[level] = i
    deepest = max(last_at_level)
    return [i for lv, i in sorted(last_at_level.items(), reverse=True) if lv != deepest]


def block_signatures(
    space: SearchSpace, arch: Arch, task: str = "saliency", num_classes: int | None = None
) -> list[BlockSignature]:
    """Per-block cost keys of `arch` with the given head, in execution order; `num_classes` is the
    width of a classifier's or a segmentation head's logits (default `hwnas.space.tasks.default_classes`)."""
    _check_head(space, check_task(task))
    num_classes = num_classes or default_classes(task)
    space.validate(arch)
    w, h = arch.resolution
    sigs, features = _encoder_signatures(space, arch, h, w)
    if is_sod(task):
        return _sod_blocks(space, SodHead.parse(task), sigs, features, h, w)
    if task == "classification":
        last = sigs[-1]
        if space.last.mix:  # AlphaNet's v3 head: pool, feature mix, then the linear layer on 1x1
            last = BlockSignature(
                "mix", last.out_h, last.out_w, last.cout, arch.mix, act=space.last.act, out_h=1, out_w=1
            )
            sigs.append(last)
        h_in, w_in = (1, 1) if last.op == "mix" else (last.out_h, last.out_w)
        sigs.append(BlockSignature("linear", h_in, w_in, last.cout, num_classes, out_h=1, out_w=1))
    elif space.residual:
        (_, _, c16), (_, _, c32) = features[-2], features[-1]
        sigs.append(BlockSignature("bisenet", h, w, c16, num_classes, skip=c32, out_h=h, out_w=w))
    else:
        classes = num_classes if is_segmentation(task) else None
        sigs += _decoder_signatures(space, features, sigs[-1], h, w, blur=blurs(task), classes=classes)
    return sigs


def sod_levels(space: SearchSpace, features: list, bottleneck: BlockSignature) -> list[tuple[int, int, int]]:
    """The SOD head's encoder levels (h, w, channels), shallow to deep: the decoder's taps and the last conv."""
    return [features[i + 1] for i in skip_sources(space)] + [(bottleneck.out_h, bottleneck.out_w, bottleneck.cout)]


def _sod_blocks(
    space: SearchSpace, head: SodHead, encoder: list, features: list, h: int, w: int
) -> list[BlockSignature]:
    levels = sod_levels(space, features, encoder[-1])
    laterals, cfems, steps = sod_signatures(head, levels, h, w, space.decoder_act)
    focus = [*encoder, frm_signature(levels[-1], features[0])] if head.focus else []
    return focus + encoder + laterals + cfems + steps


def _encoder_signatures(space: SearchSpace, arch: Arch, h: int, w: int) -> tuple[list[BlockSignature], list]:
    if space.residual:
        return _residual_signatures(space, arch, h, w)
    st = space.stem
    oh, ow = spatial_after(h, w, st.kernel, st.stride)
    sigs = [BlockSignature("conv", h, w, 3, arch.stem, st.kernel, st.stride, act=st.act, out_h=oh, out_w=ow)]
    features = [(oh, ow, arch.stem)]  # -1 (stem) first, then one per stage
    cin = arch.stem
    for spec, stage in zip(space.stages, arch.stages, strict=True):
        for b, (k, e) in enumerate(zip(stage.kernels, stage.expansions, strict=True)):
            stride = spec.stride if b == 0 else 1
            ih, iw = oh, ow
            oh, ow = spatial_after(ih, iw, k, stride)
            sigs.append(
                BlockSignature("mbconv", ih, iw, cin, stage.width, k, stride, e, spec.se, spec.act, out_h=oh, out_w=ow)
            )
            cin = stage.width
        features.append((oh, ow, stage.width))
    sigs.append(BlockSignature("conv", oh, ow, cin, arch.last, 1, 1, act=space.last.act, out_h=oh, out_w=ow))
    return sigs, features


def _residual_signatures(space: SearchSpace, arch: Arch, h: int, w: int) -> tuple[list[BlockSignature], list]:
    """MoSegNAS's encoder (Section III-B): the stem conv and max pool, then residual layers, the
    first of each stage strided (on its 3x3, as torchvision's ResNet v1.5 and BiSeNet's ResNet-18)."""
    st = space.stem
    oh, ow = spatial_after(h, w, arch.stem_kernel, st.stride)
    if st.pool:
        oh, ow = spatial_after(oh, ow, 3, 2)
    op = "convpool" if st.pool else "conv"
    stem = BlockSignature(op, h, w, 3, arch.stem, arch.stem_kernel, st.stride, act=st.act, out_h=oh, out_w=ow)
    sigs, features, cin = [stem], [(oh, ow, arch.stem)], arch.stem
    for spec, stage in zip(space.stages, arch.stages, strict=True):
        for b, mid in enumerate(stage.expansions):
            stride = spec.stride if b == 0 else 1
            ih, iw = oh, ow
            oh, ow = spatial_after(ih, iw, 3, stride)
            sigs.append(
                BlockSignature(space.block, ih, iw, cin, stage.width, 3, stride, mid, act=spec.act, out_h=oh, out_w=ow)
            )
            cin = stage.width
        features.append((oh, ow, stage.width))
    return sigs, features


def _decoder_signatures(
    space: SearchSpace,
    features: list,
    bottleneck: BlockSignature,
    h: int,
    w: int,
    *,
    blur: bool,
    classes: int | None = None,
) -> list[BlockSignature]:
    """SalNAS's decoder (`decode_output0`..`6` of `salnas/models/attentive_nas_dynamic_model.py`):
    conv3x3-BN-act then a 2x upsampling, concatenating an encoder tap before each next step; two
    full-resolution steps, the last to one sigmoid channel; in eval, the Gaussian blur. With
    `classes` (segmentation) the last step gives that many logits (conv-BN, no activation)."""
    act = space.decoder_act
    taps = [features[i + 1] for i in skip_sources(space)]  # shallow -> deep
    ups = [features[i + 1][2] for i in up_sources(space)]  # deep -> shallow
    sigs = []
    x_h, x_w, x_c, skip = bottleneck.out_h, bottleneck.out_w, bottleneck.cout, 0
    for (t_h, t_w, t_c), c in zip(reversed(taps), ups, strict=True):
        sigs.append(BlockSignature("saldec", x_h, x_w, x_c, c, 3, act=act, skip=skip, out_h=t_h, out_w=t_w))
        x_h, x_w, x_c, skip = t_h, t_w, c, t_c
    c = taps[0][2]
    sigs.append(BlockSignature("saldec", x_h, x_w, x_c, c, 3, act=act, skip=skip, out_h=h, out_w=w))
    sigs.append(BlockSignature("saldec", h, w, c, c, 3, act=act, out_h=h, out_w=w))
    if classes is None:
        sigs.append(BlockSignature("saldec", h, w, c, 1, 3, act="sigmoid", out_h=h, out_w=w))
    else:
        sigs.append(BlockSignature("saldec", h, w, c, classes, 3, act="identity", out_h=h, out_w=w))
    if blur:
        sigs.append(BlockSignature("blur", h, w, 1, 1, BLUR_KERNEL, out_h=h, out_w=w))
    return sigs


def params(space: SearchSpace, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
    """Analytic trainable parameters of the extracted subnet."""
    return sum(s.params() for s in block_signatures(space, arch, task, num_classes))


def flops(space: SearchSpace, arch: Arch, task: str = "saliency", num_classes: int | None = None) -> int:
    """Analytic FLOPs per image (2 x MACs), as `torch.utils.flop_counter` counts them."""
    return sum(s.flops() for s in block_signatures(space, arch, task, num_classes))


def sod_signatures(
    head: SodHead, levels: list[tuple[int, int, int]], h: int, w: int, act: str
) -> tuple[list[BlockSignature], list[BlockSignature], list[BlockSignature]]:
    """(laterals, CFEMs, fusion steps) of the head over encoder levels (h, w, channels), shallow first."""
    c = WIDTH
    laterals = [BlockSignature("conv", lh, lw, lc, c, 1, 1, act=act, out_h=lh, out_w=lw) for lh, lw, lc in levels]
    cfems = []
    if head.decoder != "unet":
        cfems = [
            BlockSignature("cfem", ah, aw, c, c, 3, act="relu", out_h=bh, out_w=bw)
            for (ah, aw, _), (bh, bw, _) in zip(levels, levels[1:], strict=False)
        ]
    fused_skip, fused_kernel = (c, 3) if head.decoder == "unet" else (2 * c, 1)
    (th, tw, _), n = levels[-1], len(levels)
    steps = [BlockSignature("dec", th, tw, c, c, 1, act=act, out_h=levels[-2][0], out_w=levels[-2][1])]
    for level in range(n - 2, 0, -1):
        lh, lw, _ = levels[level]
        oh, ow, _ = levels[level - 1]
        steps.append(BlockSignature("dec", lh, lw, c, c, fused_kernel, act=act, skip=fused_skip, out_h=oh, out_w=ow))
    lh, lw, _ = levels[0]
    steps.append(BlockSignature("dec", lh, lw, c, c, 3, act=act, skip=c, out_h=h, out_w=w))
    steps.append(BlockSignature("dec", h, w, c, 1, 3, act="sigmoid", out_h=h, out_w=w))
    return laterals, cfems, steps


def frm_signature(deepest: tuple[int, int, int], stem: tuple[int, int, int]) -> BlockSignature:
    (h, w, cin), (oh, ow, cout) = deepest, stem
    return BlockSignature("frm", h, w, cin, cout, 1, act="relu", out_h=oh, out_w=ow)
