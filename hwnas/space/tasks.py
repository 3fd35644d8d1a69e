"""Task names as data: the heads hwnas knows and, for FocusNet's SOD head (Zhou et al., 2024), the
variant a task name encodes (the blocks each head adds to an arch are `hwnas.space.signatures`).

The saliency head blurs its map in eval mode, as SalNAS's static model does (kornia
`GaussianBlur2d((11, 11), (10.5, 10.5))`, in every score the paper reports); "saliency/noblur" is
the same head without it. A SOD head variant is part of the task name: "sod" (AFE decoder), "sod/cfem", "sod/unet", each
optionally with "+focus" (the FOCUS cascade) — so checkpoints, tables and archives that record the
task record the variant too. The modules are `hwnas.nn.heads.sod`.

The segmentation head (MoSegNAS's task, Lu et al.) is the saliency decoder with `num_classes` logit
channels in place of the sigmoid map and no blur; "segmentation+aux" adds, in training only, the
auxiliary heads of BiSeNet (Yu et al., 2018), which MoSegNAS uses as its decoder
(`hwnas.nn.heads.segmentation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwnas.errors import ArchError

TASKS = ("classification", "saliency", "sod", "segmentation")
DECODERS = ("afe", "cfem", "unet")
WIDTH = 32  # channels of the SOD head's laterals, CFEMs and fusion steps
SALIENCY_VARIANTS = ("saliency", "saliency/noblur")
SEGMENTATION_VARIANTS = ("segmentation", "segmentation+aux")
CITYSCAPES_CLASSES = 19  # the default class count of a segmentation latency table (Cityscapes' train ids)
IGNORE = 255  # segmentation: the label of pixels that count nowhere (Cityscapes' trainId 255)
BLUR_KERNEL, BLUR_SIGMA = 11, 10.5  # SalNAS `salnas/models/attentive_nas_static_model.py`


def is_sod(task: str) -> bool:
    return task == "sod" or task.startswith(("sod/", "sod+"))


def default_classes(task: str) -> int:
    """The class count a latency table profiles when none is given: Cityscapes' 19 for segmentation,
    ImageNet's 1000 for a classifier (the others' heads have no class count)."""
    return CITYSCAPES_CLASSES if is_segmentation(task) else 1000


def is_segmentation(task: str) -> bool:
    return task in SEGMENTATION_VARIANTS


def has_aux(task: str) -> bool:
    """Whether the task's head trains with BiSeNet's auxiliary heads ("segmentation+aux")."""
    return task == "segmentation+aux"


def check_task(task: str) -> str:
    """`task` if hwnas knows it (a SOD variant included), else an `ArchError` listing what it knows."""
    if task in ("classification", *SALIENCY_VARIANTS, *SEGMENTATION_VARIANTS):
        return task
    if is_sod(task):
        SodHead.parse(task)
        return task
    raise ArchError(
        f"unknown task '{task}'; allowed: {', '.join(TASKS)} (saliency also as saliency/noblur; sod also as "
        "sod/cfem, sod/unet, +focus; segmentation also as segmentation+aux)"
    )


def base_task(task: str) -> str:
    """`"sod"` for any SOD variant, `"saliency"` for either saliency head, `"segmentation"` with or
    without aux heads, else the task itself (what data and metrics depend on)."""
    if is_sod(task):
        return "sod"
    if is_segmentation(task):
        return "segmentation"
    return "saliency" if task in SALIENCY_VARIANTS else task


def blurs(task: str) -> bool:
    """Whether the task's head blurs its output in eval mode (SalNAS's saliency head)."""
    return task == "saliency"


@dataclass(frozen=True)
class SodHead:
    """A SOD head variant: the decoder of FocusNet's Table 2 ablation and whether FOCUS is on."""

    decoder: str = "afe"
    focus: bool = False

    @classmethod
    def parse(cls, task: str) -> SodHead:
        """The head of a task name such as "sod", "sod/unet" or "sod/cfem+focus"."""
        base, plus, suffix = task.partition("+")
        name, _, decoder = base.partition("/")
        if name != "sod" or (plus and suffix != "focus") or (decoder and decoder not in DECODERS):
            raise ArchError(f"unknown SOD task '{task}'; allowed: sod, sod/cfem, sod/unet, each optionally with +focus")
        return cls(decoder or "afe", bool(plus))

    @property
    def task(self) -> str:
        return "sod" + ("" if self.decoder == "afe" else f"/{self.decoder}") + ("+focus" if self.focus else "")


def head_task(task: str, *, focus: bool = False, afe: bool = True, cfem: bool = True) -> str:
    """The task name with the SOD head's switches applied (FocusNet Table 2's rows)."""
    if not is_sod(check_task(task)):
        if focus or not (afe and cfem):
            raise ArchError(f"--focus, --no-afe and --no-cfem switch parts of the sod head; --task is {task}")
        return task
    if afe and not cfem:
        raise ArchError("AFE is a chain of CFEMs: --no-cfem needs --no-afe")
    head = SodHead.parse(task)
    decoder = head.decoder if (afe and cfem) else ("cfem" if cfem else "unet")
    return SodHead(decoder, head.focus or focus).task
