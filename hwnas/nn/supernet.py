"""`Supernet`: dynamic encoder + task head; `set_active(arch)` and `extract(arch)`.

The encoder is SalNAS's dynamic AlphaNet encoder (Section 3.1, Table 1): stem, elastic MBConv
stages, last 1x1 conv. The head is a classifier, the SalNAS saliency decoder (with class logits for
segmentation, plus BiSeNet's auxiliary heads in training for "segmentation+aux") or FocusNet's SOD head. Every block is
driven by the arch's `BlockSignature`s, the same keys the latency table uses, and `extract`
returns a `SubNet` made of static blocks (plain `torch.nn` layers) with the active weights copied,
in the manner of once-for-all's `get_active_subnet()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.nn.blocks import (
    ConvBnAct,
    DynamicBlur,
    DynamicConvBlock,
    DynamicConvBnAct,
    DynamicDecoderStep,
    DynamicFeatureMix,
    DynamicLinearHead,
    DynamicMBConv,
)
from hwnas.nn.heads.bisenet import BiSeNetHeads, DynamicBiSeNetHeads
from hwnas.nn.heads.saliency import decode
from hwnas.nn.heads.segmentation import AuxHead, DynamicAuxHead
from hwnas.nn.heads.sod import CFEM, DynamicFRM, Fixed, decode_sod
from hwnas.nn.residual import DynamicConvPool, DynamicResidualLayer
from hwnas.nn.static import build_block
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature
from hwnas.space.tasks import SodHead, check_task, default_classes, has_aux, is_sod
from hwnas.torch_device import device_of


def encode(
    x: torch.Tensor,
    stem: Callable,
    blocks: Sequence[Callable],
    stage_ends: Sequence[int],
    last: Callable,
    skip_sources: Sequence[int],
    inject: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """The encoder's level features, shallow to deep: the taps at `skip_sources` (-1 = the stem),
    then the last conv's output. `inject` is added to the stem's output (FocusNet's FRM)."""
    y = stem(x)
    if inject is not None:
        y = y + inject
    features = [y]
    for i, block in enumerate(blocks):
        y = block(y)
        if i in stage_ends:
            features.append(y)
    return [features[s + 1] for s in skip_sources] + [last(y)]


def run(
    x: torch.Tensor,
    stem: Callable,
    blocks: Sequence[Callable],
    stage_ends: Sequence[int],
    last: Callable,
    head: Sequence[Callable],
    skip_sources: Sequence[int],
    task: str,
    aux: Sequence[Callable] = (),
    bisenet: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The forward pass shared by the supernet and its extracted subnets (classification, saliency,
    segmentation). Given `aux` heads (segmentation+aux in training) it returns the main output and
    their logits on the two deepest levels (the deepest tap, then the last conv). With `bisenet`
    (a residual space's segmentation) the one head is BiSeNet's, on the image and the 1/16 and 1/32
    features; it has its own auxiliary heads."""
    levels = encode(x, stem, blocks, stage_ends, last, skip_sources)
    if task == "classification":  # [feature mix ->] linear
        y = levels[-1]
        for block in head:
            y = block(y)
        return y
    if bisenet:
        return head[0](x, *levels)
    out = decode(head, levels[:-1], levels[-1], tuple(x.shape[-2:]))
    if not aux:
        return out
    return (out, *(head(level) for head, level in zip(aux, levels[-2:], strict=True)))


def run_sod(
    x: torch.Tensor,
    head: SodHead,
    encoder: tuple,
    localizer: tuple | None,
    frm: Callable | None,
    aux: Callable | None,
    laterals: Sequence[Callable],
    cfems: Sequence[Callable],
    steps: Sequence[Callable],
    training: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """FocusNet's forward pass (Fig. 2): [localization encoder -> FRM into the stem ->] encoder ->
    SOD decoder. In training with FOCUS it also returns the auxiliary localization logits."""
    inject = located = None
    if head.focus:
        deepest = encode(x, *localizer)[-1]
        inject, located = frm(deepest), aux(deepest) if training else None
    levels = encode(x, *encoder, inject=inject)
    out = decode_sod(head, levels, laterals, cfems, steps, tuple(x.shape[-2:]))
    return (out, located) if located is not None else out


def split_sod(sigs: Sequence[BlockSignature], head: SodHead, n_enc: int, n_levels: int) -> dict[str, list]:
    """A SOD arch's signatures by part, in the order of `SearchSpace.block_signatures`."""
    parts, i = {}, 0
    if head.focus:
        parts["localizer"], parts["frm"], i = list(sigs[:n_enc]), [sigs[n_enc]], n_enc + 1
    parts["encoder"], i = list(sigs[i : i + n_enc]), i + n_enc
    parts["laterals"], i = list(sigs[i : i + n_levels]), i + n_levels
    n_cfem = 0 if head.decoder == "unet" else n_levels - 1
    parts["cfems"], parts["steps"] = list(sigs[i : i + n_cfem]), list(sigs[i + n_cfem :])
    return parts


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def n_encoder_blocks(space: SearchSpace, arch: Arch) -> int:
    """How many of an arch's signatures are its encoder's: stem, layers and (MBConv spaces) last conv."""
    return 1 + sum(st.depth for st in arch.stages) + (0 if space.residual else 1)


def _n_levels(space: SearchSpace) -> int:
    return len(space.skip_sources()) + 1


def _stage_ends(arch: Arch) -> list[int]:
    ends, total = [], 0
    for st in arch.stages:
        total += st.depth
        ends.append(total - 1)
    return ends


class SubNet(nn.Module):
    """A static subnet: plain `torch.nn` layers, no supernet code needed to run or export it."""

    def __init__(
        self,
        *,
        arch: Arch,
        space_name: str,
        task: str,
        stem: nn.Module,
        blocks: list[nn.Module],
        last: nn.Module,
        head: list[nn.Module],
        skip_sources: list[int],
        aux: list[nn.Module] | None = None,
        bisenet: bool = False,
    ):
        super().__init__()
        self.arch, self.space_name, self.task, self.bisenet = arch, space_name, task, bisenet
        self.stem, self.blocks, self.last, self.head = stem, nn.ModuleList(blocks), last, nn.ModuleList(head)
        self.stage_ends = _stage_ends(arch)
        self.skip_sources = list(skip_sources)
        if aux:  # segmentation+aux: BiSeNet's auxiliary heads, run in training only
            self.aux = nn.ModuleList(aux)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        aux = list(self.aux) if self.training and hasattr(self, "aux") else ()
        return run(
            x, self.stem, list(self.blocks), self.stage_ends, self.last, list(self.head), self.skip_sources, self.task,
            aux, self.bisenet,
        )  # fmt: skip


class SodSubNet(nn.Module):
    """A static SOD subnet (FocusNet head): plain `torch.nn` layers. With FOCUS it holds the
    localization encoder, the FRM and the auxiliary localization conv (used in training only)."""

    def __init__(self, *, arch: Arch, space_name: str, task: str, skip_sources: list[int], parts: dict[str, list]):
        super().__init__()
        self.arch, self.space_name, self.task, self.head = arch, space_name, task, SodHead.parse(task)
        self.stage_ends, self.skip_sources = _stage_ends(arch), list(skip_sources)
        self.stem, *blocks, self.last = parts["encoder"]
        self.blocks = nn.ModuleList(blocks)
        self.laterals, self.cfems, self.steps = (nn.ModuleList(parts[k]) for k in ("laterals", "cfems", "steps"))
        if self.head.focus:
            self.loc_stem, *loc_blocks, self.loc_last = parts["localizer"]
            self.loc_blocks = nn.ModuleList(loc_blocks)
            self.frm, self.aux = parts["frm"][0], parts["aux"][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        def parts(stem, blocks, last):
            return (stem, list(blocks), self.stage_ends, last, self.skip_sources)

        focus = self.head.focus
        return run_sod(
            x,
            self.head,
            parts(self.stem, self.blocks, self.last),
            parts(self.loc_stem, self.loc_blocks, self.loc_last) if focus else None,
            self.frm if focus else None,
            self.aux if focus else None,
            list(self.laterals),
            list(self.cfems),
            list(self.steps),
            self.training,
        )


def build_subnet(
    space: SearchSpace, arch: Arch, *, task: str = "saliency", num_classes: int | None = None
) -> SubNet | SodSubNet:
    """A `SubNet` for `arch` with fresh weights, built block by block from its signatures.

    It has exactly the modules `Supernet.extract(arch)` returns (what end-to-end latency measures).
    """
    num_classes = num_classes or default_classes(task)
    sigs = space.block_signatures(arch, task, num_classes)
    n_enc = n_encoder_blocks(space, arch)
    if space.residual:
        return _residual_subnet(space, arch, task, sigs, n_enc)
    if is_sod(task):
        head = SodHead.parse(task)
        parts = {k: [build_block(s) for s in v] for k, v in split_sod(sigs, head, n_enc, _n_levels(space)).items()}
        if head.focus:
            parts["aux"] = [ConvBnAct(arch.last, 1, 1, act=None)]
        return SodSubNet(arch=arch, space_name=space.name, task=task, skip_sources=space.skip_sources(), parts=parts)
    return SubNet(
        arch=arch,
        space_name=space.name,
        task=task,
        stem=build_block(sigs[0]),
        blocks=[build_block(s) for s in sigs[1 : n_enc - 1]],
        last=build_block(sigs[n_enc - 1]),
        head=[build_block(s) for s in sigs[n_enc:]],
        skip_sources=space.skip_sources(),
        aux=[AuxHead(c, num_classes) for c in aux_widths(space, arch)] if has_aux(task) else None,
    )


def _residual_subnet(space: SearchSpace, arch: Arch, task: str, sigs: list[BlockSignature], n_enc: int) -> SubNet:
    """A residual space's subnet: stem, layers, no last conv, the classifier or BiSeNet's heads (with
    their auxiliary heads for segmentation+aux)."""
    head = sigs[n_enc]
    bisenet = head.op == "bisenet"
    return SubNet(
        arch=arch,
        space_name=space.name,
        task=task,
        stem=build_block(sigs[0]),
        blocks=[build_block(s) for s in sigs[1:n_enc]],
        last=nn.Identity(),
        head=[BiSeNetHeads(c16=head.cin, c32=head.skip, num_classes=head.cout, aux=has_aux(task))]
        if bisenet
        else [build_block(head)],
        skip_sources=space.skip_sources(),
        bisenet=bisenet,
    )


def aux_widths(space: SearchSpace, arch: Arch) -> list[int]:
    """Input widths of the auxiliary heads: the deepest tap's and the last conv's."""
    deepest = space.skip_sources()[-1]
    return [arch.stem if deepest == -1 else arch.stages[deepest].width, arch.last]


def _dynamic_encoder(space: SearchSpace) -> tuple[nn.Module, nn.ModuleList, nn.Module]:
    """Stem, elastic MBConv stages and last conv at the space's largest widths."""
    if space.residual:
        return _dynamic_residual_encoder(space)
    big = space.max()
    stem = DynamicConvBlock(3, big.stem, space.stem.kernel, space.stem.stride, space.stem.act)
    cin, stages = big.stem, []
    for spec in space.stages:
        width = max(spec.widths)
        stage = [
            DynamicMBConv(
                cin if b == 0 else width,
                width,
                spec.kernels,
                spec.expansions,
                spec.stride if b == 0 else 1,
                spec.se,
                spec.act,
                first=b == 0,
            )
            for b in range(max(spec.depths))
        ]
        stages.append(nn.ModuleList(stage))
        cin = width
    return stem, nn.ModuleList(stages), DynamicConvBlock(cin, big.last, 1, 1, space.last.act)


def _dynamic_residual_encoder(space: SearchSpace) -> tuple[nn.Module, nn.ModuleList, nn.Module]:
    """MoSegNAS's stem and residual stages at the largest widths; no last conv (an identity)."""
    stem = DynamicConvPool(max(space.stem.widths), space.stem.kernel, space.stem.stride, space.stem.act)
    cin, stages = max(space.stem.widths), []
    for spec in space.stages:
        width, mid = max(spec.widths), max(spec.expansions)
        layers = [
            DynamicResidualLayer(
                op=space.block, in_max=cin if b == 0 else width, out_max=width, mid_max=mid,
                stride=spec.stride if b == 0 else 1, act=spec.act, first=b == 0,
            )
            for b in range(max(spec.depths))
        ]  # fmt: skip
        stages.append(nn.ModuleList(layers))
        cin = width
    return stem, nn.ModuleList(stages), nn.Identity()


class Supernet(nn.Module):
    """Weight-sharing supernet over a `SearchSpace` with a classification, saliency, segmentation or SOD head."""

    def __init__(self, space: SearchSpace, *, task: str = "saliency", num_classes: int | None = None):
        super().__init__()
        check_task(task)
        num_classes = num_classes or default_classes(task)
        self.space, self.task, self.num_classes = space, task, num_classes
        big = space.max()
        sigs = space.block_signatures(big, task, num_classes)
        self.stem, self.stages, self.last = _dynamic_encoder(space)
        n_enc = n_encoder_blocks(space, big)
        if space.residual and task != "classification":
            head = sigs[n_enc]
            self.head = nn.ModuleList(
                [DynamicBiSeNetHeads(c16=head.cin, c32=head.skip, num_classes=num_classes, aux=has_aux(task))]
            )
        elif task == "classification":
            self.head = nn.ModuleList(_classifier(sigs[n_enc:]))
        elif not is_sod(task):
            self.head = nn.ModuleList(_decoder_step(s) for s in sigs[n_enc:])
            if has_aux(task):
                self.aux = nn.ModuleList(DynamicAuxHead(c, num_classes) for c in aux_widths(space, big))
        else:
            self._build_sod(sigs, n_enc)
        self._regularization = (0.0, 0.0)  # (dropout, drop-connect), see `regularized`
        self.set_active(big)

    def _build_sod(self, sigs: list[BlockSignature], n_enc: int) -> None:
        """FocusNet's head: laterals over elastic level widths; CFEMs and fusion steps of fixed width."""
        self.sod = SodHead.parse(self.task)
        parts = split_sod(sigs, self.sod, n_enc, _n_levels(self.space))
        big, act = self.space.max(), self.space.decoder_act
        self.laterals = nn.ModuleList(DynamicConvBlock(s.cin, s.cout, 1, 1, act) for s in parts["laterals"])
        self.cfems = nn.ModuleList(Fixed(CFEM(s.cin)) for s in parts["cfems"])
        self.steps = nn.ModuleList(Fixed(build_block(s)) for s in parts["steps"])
        if self.sod.focus:
            self.loc_stem, self.loc_stages, self.loc_last = _dynamic_encoder(self.space)
            self.frm = DynamicFRM(big.last, big.stem)
            self.aux = DynamicConvBnAct(big.last, 1, 1, act=None)

    # ---- subnet selection ---------------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        """Switch the supernet to `arch` (validated against the space)."""
        self.space.validate(arch)
        self.arch = arch
        self._sigs = self.space.block_signatures(arch, self.task, self.num_classes)

    def _n_enc(self) -> int:
        return n_encoder_blocks(self.space, self.arch)

    def _active_blocks(self, stages: nn.ModuleList | None = None) -> list[tuple[nn.Module, BlockSignature]]:
        """The active MBConv blocks of an encoder (default the main one) with their signatures."""
        stages = self.stages if stages is None else stages
        modules = [blk for stage, st in zip(stages, self.arch.stages, strict=True) for blk in stage[: st.depth]]
        encoder = self._parts()["encoder"] if hasattr(self, "sod") else self._sigs
        return list(zip(modules, encoder[1 : 1 + len(modules)], strict=True))

    def _parts(self) -> dict[str, list[BlockSignature]]:
        return split_sod(self._sigs, self.sod, self._n_enc(), _n_levels(self.space))

    @contextlib.contextmanager
    def regularized(self, *, dropout: float, drop_connect: float) -> Iterator[None]:
        """AlphaNet's regularisation of the largest subnet, as SalNAS trains its supernet
        (`train_salnas.py`: `set_dropout_rate(0.2, 0.2, True)` for the largest subnet only, AttentiveNAS
        `set_dropout_rate`): dropout before the last layer (the saliency map's conv, the classifier) and
        drop-connect in the blocks of the last two stages at `drop_connect` x i / n (i the block's index
        among all n of the supernet), where the shortcut is the identity. Training mode only."""
        previous, self._regularization = self._regularization, (dropout, drop_connect)
        try:
            yield
        finally:
            self._regularization = previous

    def _drop_rates(self) -> list[float]:
        """Drop-connect rate of each active block (`regularized`)."""
        rate = self._regularization[1]
        n, first, rates = sum(max(spec.depths) for spec in self.space.stages), 0, []
        for i, (spec, st) in enumerate(zip(self.space.stages, self.arch.stages, strict=True)):
            late = i >= len(self.space.stages) - 2
            rates += [rate * (first + b) / n if late else 0.0 for b in range(st.depth)]
            first += max(spec.depths)
        return rates

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "sod"):
            return self._forward_sod(x)
        sigs = self._sigs
        blocks = self._active_blocks()
        n_enc = self._n_enc()
        dropout = self._regularization[0] if self.training else 0.0
        bisenet = self.space.residual and self.task != "classification"
        if self.task == "classification":
            head = [partial(m, sig=s) for m, s in zip(self.head, sigs[n_enc:], strict=True)]
            head[-1] = partial(head[-1], dropout=dropout)
        elif bisenet:  # BiSeNet's heads, no dropout (BiSeNet's recipe has none)
            head = [partial(self.head[0], sig=sigs[n_enc])]
        else:
            head = [partial(_dec_call, step, sig) for step, sig in zip(self.head, sigs[n_enc:], strict=True)]
            last = max(j for j, sig in enumerate(sigs[n_enc:]) if sig.op == "saldec")  # the map's conv
            head[last] = partial(_dropped, head[last], dropout)
        return run(
            x,
            partial(self.stem, sig=sigs[0]),
            [partial(m, sig=s, drop=d) for (m, s), d in zip(blocks, self._drop_rates(), strict=True)],
            _stage_ends(self.arch),
            _identity if self.space.residual else partial(self.last, sig=sigs[n_enc - 1]),
            head,
            self.space.skip_sources(),
            self.task,
            list(self.aux) if self.training and hasattr(self, "aux") else (),
            bisenet,
        )

    def _forward_sod(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        parts, ends, taps = self._parts(), _stage_ends(self.arch), self.space.skip_sources()

        def encoder(stem, stages, last, sigs):
            blocks = [partial(m, sig=s) for m, s in self._active_blocks(stages)]
            return (partial(stem, sig=sigs[0]), blocks, ends, partial(last, sig=sigs[-1]), taps)

        focus = self.sod.focus
        return run_sod(
            x,
            self.sod,
            encoder(self.stem, self.stages, self.last, parts["encoder"]),
            encoder(self.loc_stem, self.loc_stages, self.loc_last, parts["localizer"]) if focus else None,
            partial(self.frm, sig=parts["frm"][0]) if focus else None,
            self._aux if focus else None,
            [partial(m, sig=s) for m, s in zip(self.laterals, parts["laterals"], strict=True)],
            list(self.cfems),
            list(self.steps),
            self.training,
        )

    def _aux(self, x: torch.Tensor) -> torch.Tensor:
        return self.aux(x, 1, 1)

    # ---- extraction ---------------------------------------------------------------------
    def extract(self, arch: Arch | None = None) -> SubNet | SodSubNet:
        """A static `SubNet` for `arch` (default: the active one) with copied weights, built on the
        supernet's own device (a CUDA supernet's subnet never passes through the CPU)."""
        if arch is not None:
            self.set_active(arch)
        with torch.device(device_of(self)):  # every layer the extraction creates is made there
            return self._extract().train(self.training)

    def _extract(self) -> SubNet | SodSubNet:
        if hasattr(self, "sod"):
            return self._extract_sod()
        sigs = self._sigs
        blocks = self._active_blocks()
        n_enc = self._n_enc()
        head_sigs = sigs[n_enc:]
        net = SubNet(
            arch=self.arch,
            space_name=self.space.name,
            task=self.task,
            stem=self.stem.extract(sigs[0]),
            blocks=[m.extract(s) for m, s in blocks],
            last=nn.Identity() if self.space.residual else self.last.extract(sigs[n_enc - 1]),
            head=[m.extract(s) for m, s in zip(self.head, head_sigs, strict=True)],
            skip_sources=self.space.skip_sources(),
            aux=[m.extract(c) for m, c in zip(self.aux, aux_widths(self.space, self.arch), strict=True)]
            if hasattr(self, "aux")
            else None,
            bisenet=self.space.residual and self.task != "classification",
        )
        return net

    def _extract_sod(self) -> SodSubNet:
        sigs = self._parts()

        def encoder(stem, stages, last, own):
            blocks = [m.extract(s) for m, s in self._active_blocks(stages)]
            return [stem.extract(own[0]), *blocks, last.extract(own[-1])]

        parts = {
            "encoder": encoder(self.stem, self.stages, self.last, sigs["encoder"]),
            "laterals": [m.extract(s) for m, s in zip(self.laterals, sigs["laterals"], strict=True)],
            "cfems": [m.extract(s) for m, s in zip(self.cfems, sigs["cfems"], strict=True)],
            "steps": [m.extract(s) for m, s in zip(self.steps, sigs["steps"], strict=True)],
        }
        if self.sod.focus:
            parts["localizer"] = encoder(self.loc_stem, self.loc_stages, self.loc_last, sigs["localizer"])
            parts["frm"] = [self.frm.extract(sigs["frm"][0])]
            parts["aux"] = [self.aux.extract(self.arch.last, 1, 1)]
        return SodSubNet(
            arch=self.arch,
            space_name=self.space.name,
            task=self.task,
            skip_sources=self.space.skip_sources(),
            parts=parts,
        )

    def block_signatures(self, arch: Arch | None = None) -> list[BlockSignature]:
        return self.space.block_signatures(arch or self.arch, self.task, self.num_classes)


def _dec_call(step: DynamicDecoderStep, sig: BlockSignature, x: torch.Tensor, skip=None, size=None) -> torch.Tensor:
    return step(x, sig, skip, size)


def _dropped(step: Callable, p: float, x: torch.Tensor, skip=None, size=None) -> torch.Tensor:
    """`step` after dropout on its input (SalNAS: before `decode_output6`)."""
    return step(F.dropout(x, p, training=True) if p > 0 else x, skip, size)


def _decoder_step(sig: BlockSignature) -> DynamicDecoderStep | DynamicBlur:
    if sig.op == "blur":
        return DynamicBlur(sig.kernel)
    return DynamicDecoderStep(sig.cin, sig.skip, sig.cout, sig.kernel, sig.act, op=sig.op)


def _classifier(sigs: list[BlockSignature]) -> list[nn.Module]:
    """[AlphaNet's feature mix,] the linear layer, at the largest widths."""
    mix = [DynamicFeatureMix(s.cin, s.cout, s.act) for s in sigs if s.op == "mix"]
    return [*mix, DynamicLinearHead(sigs[-1].cin, sigs[-1].cout)]
