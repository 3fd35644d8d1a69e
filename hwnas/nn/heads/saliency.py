"""Saliency decoder in the SalNAS manner (Termritthikun et al., Section 3.1.1, Fig. 1).

A U-Net-like decoder whose widths follow the active encoder, block for block the authors' (chakkritte/SalNAS
`salnas/models/attentive_nas_dynamic_model.py`, `decode_output0`..`6`): starting from the last
conv, each step is conv3x3-BN-act then a 2x bilinear upsampling (align_corners=True) to the next
(shallower) encoder tap, which is concatenated before the following step; two full-resolution steps
end in a one-channel sigmoid map, blurred in eval mode unless the task is `saliency/noblur`.
The step sequence is `SearchSpace._decoder_signatures`; `decode` runs it for both the dynamic and
the static form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Step = Callable[[torch.Tensor, torch.Tensor | None, tuple[int, int] | None], torch.Tensor]


def decode(
    steps: Sequence[Step], taps: Sequence[torch.Tensor], bottleneck: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """Run the decoder steps: `len(taps) + 1` upsampling steps, then two full-resolution ones.

    taps: encoder features from shallow to deep (SalNAS: stem, MBConv-2, -3, -5).
    """
    deep_first = list(reversed(taps))
    skips = [None, *deep_first]
    sizes = [tuple(t.shape[-2:]) for t in deep_first] + [tuple(image_size)]
    x = bottleneck
    n_up = len(taps) + 1
    for step, skip, size in zip(steps[:n_up], skips, sizes, strict=True):
        x = step(x, skip, size)
    for step in steps[n_up:]:
        x = step(x)
    return x
