"""`SlotCost`: a per-block quantity summed over many encoded archs at once.

A subnet's cost (latency, params, FLOPs) is a sum over its blocks, and each block position (a
`Slot`) takes its signature from a few genes. `SlotCost` tabulates the quantity once per slot over
those genes, so pricing n archs is one fancy-indexing lookup per slot (MoSegNAS Eq. 7 for latency).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwnas.space.search_space import SearchSpace
from hwnas.space.signature import BlockSignature


class SlotCost:
    """Sum of `cost(signature)` over each arch's active blocks; NaN where `cost` returns None."""

    def __init__(
        self,
        space: SearchSpace,
        cost: Callable[[BlockSignature], float | None],
        *,
        task: str = "saliency",
        num_classes: int | None = None,
    ):
        self.space = space
        self.slots = []
        for slot in space.slots(task):
            sigs = space.slot_signatures(slot, task, num_classes)
            shape = tuple(max(c[i] for c in sigs) + 1 for i in range(len(slot.genes)))
            values, keys = np.full(shape, np.nan), np.empty(shape, dtype=object)
            for combo, sig in sigs.items():
                keys[combo] = sig.key
                value = cost(sig)
                if value is not None:
                    values[combo] = value
            active = None
            if slot.depth_gene is not None:
                depths = space.variables[slot.depth_gene][1]
                active = np.array([d >= slot.min_depth for d in depths])
            self.slots.append((slot, values, keys, active))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(per-arch sums, keys of the blocks whose cost is missing) for an (n, n_var) matrix."""
        total = np.zeros(len(x))
        missing: list[str] = []
        for slot, values, keys, active in self.slots:
            index = tuple(x[:, g] for g in slot.genes)
            value = values[index]
            if active is not None:
                value = np.where(active[x[:, slot.depth_gene]], value, 0.0)
            bad = np.isnan(value)
            if bad.any():
                missing += [str(k) for k in keys[tuple(i[bad] for i in index)]]
                value = np.where(bad, 0.0, value)
            total += value
        return total, list(dict.fromkeys(missing))

    def lower_bound(self, allowed_resolutions: list[int] | None = None) -> float:
        """A number no arch's sum goes below: for each allowed resolution, every slot at its cheapest
        choice (an optional block at min(0, cheapest)), the lowest over resolutions. A bound, not an
        arch: the slots' cheapest choices may disagree on shared genes (widths), so the true minimum
        can lie above it, never below."""
        res_gene = self.space.gene("resolution")
        choices = allowed_resolutions or list(range(len(self.space.resolutions)))
        best = np.inf
        for r in choices:
            total = 0.0
            for slot, values, _, active in self.slots:
                part = values[r] if slot.genes and slot.genes[0] == res_gene else values
                cheapest = float(np.nanmin(part)) if not np.isnan(part).all() else 0.0
                total += min(cheapest, 0.0) if active is not None and not active.all() else cheapest
            best = min(best, total)
        return float(best)
