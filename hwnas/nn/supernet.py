"""`Supernet`: dynamic encoder + task head; `set_active(arch)` and `extract(arch)`.

The encoder is SalNAS's dynamic AlphaNet encoder (Section 3.1, Table 1): stem, elastic MBConv
stages, last 1x1 conv. The head is a classifier or the SalNAS saliency decoder. Every block is
driven by the arch's `BlockSignature`s, the same keys the latency table uses, and `extract`
returns a `SubNet` made of static blocks (plain `torch.nn` layers) with the active weights copied,
in the manner of once-for-all's `get_active_subnet()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from hwnas.errors import ArchError
from hwnas.nn.blocks import (
    DynamicConvBlock,
    DynamicDecoderStep,
    DynamicLinearHead,
    DynamicMBConv,
    build_block,
)
from hwnas.nn.heads.saliency import decode
from hwnas.signature import BlockSignature
from hwnas.space import TASKS, Arch, SearchSpace


def run(
    x: torch.Tensor,
    stem: Callable,
    blocks: Sequence[Callable],
    stage_ends: Sequence[int],
    last: Callable,
    head: Sequence[Callable],
    skip_sources: Sequence[int],
    task: str,
) -> torch.Tensor:
    """The forward pass shared by the supernet and its extracted subnets."""
    features = [stem(x)]
    y = features[0]
    for i, block in enumerate(blocks):
        y = block(y)
        if i in stage_ends:
            features.append(y)
    bottleneck = last(y)
    if task == "classification":
        return head[0](bottleneck)
    taps = [features[s + 1] for s in skip_sources]
    return decode(head, taps, bottleneck, tuple(x.shape[-2:]))


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
    ):
        super().__init__()
        self.arch, self.space_name, self.task = arch, space_name, task
        self.stem, self.blocks, self.last, self.head = stem, nn.ModuleList(blocks), last, nn.ModuleList(head)
        self.stage_ends = _stage_ends(arch)
        self.skip_sources = list(skip_sources)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run(
            x, self.stem, list(self.blocks), self.stage_ends, self.last, list(self.head), self.skip_sources, self.task
        )


def build_subnet(space: SearchSpace, arch: Arch, *, task: str = "saliency", num_classes: int = 1000) -> SubNet:
    """A `SubNet` for `arch` with fresh weights, built block by block from its signatures.

    It has exactly the modules `Supernet.extract(arch)` returns (what end-to-end latency measures).
    """
    sigs = space.block_signatures(arch, task, num_classes)
    n_enc = 2 + sum(st.depth for st in arch.stages)
    return SubNet(
        arch=arch,
        space_name=space.name,
        task=task,
        stem=build_block(sigs[0]),
        blocks=[build_block(s) for s in sigs[1 : n_enc - 1]],
        last=build_block(sigs[n_enc - 1]),
        head=[build_block(s) for s in sigs[n_enc:]],
        skip_sources=space.skip_sources(),
    )


class Supernet(nn.Module):
    """Weight-sharing supernet over a `SearchSpace` with a `classification` or `saliency` head."""

    def __init__(self, space: SearchSpace, *, task: str = "saliency", num_classes: int = 1000):
        super().__init__()
        if task not in TASKS:
            raise ArchError(f"unknown task '{task}'; allowed: {list(TASKS)}")
        self.space, self.task, self.num_classes = space, task, num_classes
        big = space.max()
        sigs = space.block_signatures(big, task, num_classes)
        self.stem = DynamicConvBlock(3, big.stem, space.stem.kernel, space.stem.stride, space.stem.act)
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
                )
                for b in range(max(spec.depths))
            ]
            stages.append(nn.ModuleList(stage))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.last = DynamicConvBlock(cin, big.last, 1, 1, space.last.act)
        n_enc = 2 + sum(st.depth for st in big.stages)
        if task == "classification":
            self.head = nn.ModuleList([DynamicLinearHead(big.last, num_classes)])
        else:
            self.head = nn.ModuleList(DynamicDecoderStep(s.cin, s.skip, s.cout, s.kernel, s.act) for s in sigs[n_enc:])
        self.set_active(big)

    # ---- subnet selection ---------------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        """Switch the supernet to `arch` (validated against the space)."""
        self.space.validate(arch)
        self.arch = arch
        self._sigs = self.space.block_signatures(arch, self.task, self.num_classes)

    def _active_blocks(self) -> list[tuple[nn.Module, BlockSignature]]:
        modules = [blk for stage, st in zip(self.stages, self.arch.stages, strict=True) for blk in stage[: st.depth]]
        return list(zip(modules, self._sigs[1 : 1 + len(modules)], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigs = self._sigs
        blocks = self._active_blocks()
        n_enc = 2 + len(blocks)
        if self.task == "classification":
            head = [partial(self.head[0], sig=sigs[-1])]
        else:
            head = [partial(_dec_call, step, sig) for step, sig in zip(self.head, sigs[n_enc:], strict=True)]
        return run(
            x,
            partial(self.stem, sig=sigs[0]),
            [partial(m, sig=s) for m, s in blocks],
            _stage_ends(self.arch),
            partial(self.last, sig=sigs[n_enc - 1]),
            head,
            self.space.skip_sources(),
            self.task,
        )

    # ---- extraction ---------------------------------------------------------------------
    def extract(self, arch: Arch | None = None) -> SubNet:
        """A static `SubNet` for `arch` (default: the active one) with copied weights."""
        if arch is not None:
            self.set_active(arch)
        sigs = self._sigs
        blocks = self._active_blocks()
        n_enc = 2 + len(blocks)
        head_sigs = sigs[n_enc:]
        net = SubNet(
            arch=self.arch,
            space_name=self.space.name,
            task=self.task,
            stem=self.stem.extract(sigs[0]),
            blocks=[m.extract(s) for m, s in blocks],
            last=self.last.extract(sigs[n_enc - 1]),
            head=[m.extract(s) for m, s in zip(self.head, head_sigs, strict=True)],
            skip_sources=self.space.skip_sources(),
        )
        return net.train(self.training)

    def block_signatures(self, arch: Arch | None = None) -> list[BlockSignature]:
        return self.space.block_signatures(arch or self.arch, self.task, self.num_classes)


def _dec_call(step: DynamicDecoderStep, sig: BlockSignature, x: torch.Tensor, skip, size) -> torch.Tensor:
    return step(x, sig, skip, size)
