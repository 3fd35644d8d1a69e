"""Objectives of a search: accuracy (maximised) and hardware costs (minimised), vectorised over
encoded archs (an (n, n_var) integer matrix, `SearchSpace.encode`).

Latency comes from the device's latency table (calibrated when the table holds a calibration);
params, FLOPs and size are analytic sums over block signatures. Energy (mJ per inference call)
comes from a table profiled with `hwnas profile --energy`; `energy_source` says whether it is
measured or estimated, and the search archive records it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwnas.hardware.table import LatencyTable
from hwnas.search.budget import BudgetError, base, device_of
from hwnas.space import SearchSpace
from hwnas.space.slotcost import SlotCost

COSTS = ("latency", "params", "flops", "size", "energy")
UNITS = {"accuracy": "", "latency": "ms", "params": "M", "flops": "GFLOPs", "size": "MB", "energy": "mJ"}
DISPLAY_SCALE = {"params": 1e-6, "flops": 1e-9}


@dataclass(frozen=True)
class Objective:
    name: str
    maximise: bool = False

    @property
    def unit(self) -> str:
        return UNITS.get(base(self.name), "")

    @property
    def scale(self) -> float:
        """What a value is multiplied by to show it in `unit` (params -> M, FLOPs -> G)."""
        return DISPLAY_SCALE.get(base(self.name), 1.0)

    def show(self, value: float) -> str:
        """A value in display units (M params, GFLOPs)."""
        scaled = value * self.scale
        return f"{scaled:.4f}" if self.name == "accuracy" else f"{scaled:.3f} {self.unit}".strip()


class Costs:
    """The hardware-side objectives of encoded archs; with `confidence`, latency is the upper
    bound a subnet stays under with that probability (`LatencyTable.upper_many`)."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        task: str,
        num_classes: int = 1,
        table: LatencyTable | None = None,
        confidence: float | None = None,
    ):
        self.space, self.table, self.confidence = space, table, confidence
        self._params = SlotCost(space, lambda s: float(s.params()), task=task, num_classes=num_classes)
        self._flops = SlotCost(space, lambda s: float(s.flops()), task=task, num_classes=num_classes)

    @property
    def energy_source(self) -> str | None:
        return None if self.table is None else self.table.energy_source

    def lower_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        """A value of `name` that no subnet goes below (each block at its cheapest; see
        `SlotCost.lower_bound`): a budget under it cannot be met, one above it may be."""
        if name in ("latency", "energy"):
            smallest = self.space.encode(self.space.min())[None]
            if allowed_resolutions:  # a table may hold only some resolutions: price one it has
                smallest[0, self.space.gene("resolution")] = min(allowed_resolutions)
            self(name, smallest)  # the same errors as pricing an arch
            return self.table.lower_bound(name, allowed_resolutions)
        if name not in ("params", "flops", "size"):
            raise BudgetError(f"unknown objective '{name}'; allowed: accuracy, {', '.join(COSTS)}")
        bound = (self._flops if name == "flops" else self._params).lower_bound(allowed_resolutions)
        return bound * 4 / 1e6 if name == "size" else bound

    def upper_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        """`name` of the largest subnet at the largest allowed resolution (the hypervolume's reference)."""
        largest = self.space.encode(self.space.max())[None]
        if allowed_resolutions:
            largest[0, self.space.gene("resolution")] = max(allowed_resolutions)
        return float(self(name, largest)[0])

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        if name == "latency":
            if self.table is None:
                raise BudgetError("latency needs a latency table: build one with `hwnas profile --device D`")
            if self.confidence is not None:
                return self.table.upper_many(x, confidence=self.confidence)
            return self.table.predict_many(x)
        if name == "params":
            return self._params(x)[0]
        if name == "flops":
            return self._flops(x)[0]
        if name == "size":
            return self._params(x)[0] * 4 / 1e6  # fp32 weights, MB
        if name == "energy":
            if self.table is None or self.table.energy_source is None:
                raise BudgetError("energy as an objective needs a table with energy (`hwnas profile --energy`)")
            return self.table.predict_energy_many(x)
        raise BudgetError(f"unknown objective '{name}'; allowed: accuracy, {', '.join(COSTS)}")


class DeviceCosts:
    """The costs of one search on one or several devices, each device's its own (`Costs` with its
    latency table, or a benchmark's column): `latency@DEVICE` and `energy@DEVICE` come from that
    device's; params, FLOPs and size from the first's (they do not depend on the device); plain
    `latency` means the only device, and is refused when there are several."""

    def __init__(self, by_device: dict):
        if not by_device:
            raise BudgetError("a search needs at least one device")
        self.by_device = dict(by_device)
        self.first = next(iter(self.by_device.values()))
        self.space = self.first.space
        self.table = self  # what a cached PNAG generator keys on: `table.meta`
        self.meta = {d: getattr(getattr(c, "table", None), "meta", {}) for d, c in self.by_device.items()}

    @property
    def energy_source(self) -> str | None:
        return self.first.energy_source

    def _route(self, name: str):
        device = device_of(name)
        if device is None:
            if base(name) in ("latency", "energy") and len(self.by_device) > 1:
                devices = ", ".join(self.by_device)
                raise BudgetError(
                    f"a search on several devices ({devices}) needs the device in each {name} budget, "
                    f"like {next(iter(self.by_device))}:12ms"
                )
            return self.first, name
        if device not in self.by_device:
            raise BudgetError(
                f"'{name}' names device '{device}', which is not searched; --device: {', '.join(self.by_device)}"
            )
        return self.by_device[device], base(name)

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        costs, plain = self._route(name)
        return costs(plain, x)

    def lower_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        costs, plain = self._route(name)
        return costs.lower_bound(plain, allowed_resolutions)

    def upper_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        costs, plain = self._route(name)
        return costs.upper_bound(plain, allowed_resolutions)
