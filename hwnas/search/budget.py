"""Budgets: a limit on one objective, parsed from what a user types (`30ms`, `2mJ`, `300MFLOPs`,
`5M` parameters, `20MB` model size). A latency or energy budget may name its device
(`pixel3:12ms`): its objective is then `latency@pixel3`, one per device of a multi-device search."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hwnas.errors import HwnasError

# unit (case-sensitive where it matters: mJ vs MJ, M params vs m) -> (objective, factor to base unit)
UNITS: dict[str, tuple[str, float]] = {
    "us": ("latency", 1e-3),
    "ms": ("latency", 1.0),
    "s": ("latency", 1e3),
    "uJ": ("energy", 1e-3),
    "mJ": ("energy", 1.0),
    "J": ("energy", 1e3),
    "FLOPs": ("flops", 1.0),
    "KFLOPs": ("flops", 1e3),
    "MFLOPs": ("flops", 1e6),
    "GFLOPs": ("flops", 1e9),
    "K": ("params", 1e3),
    "M": ("params", 1e6),
    "G": ("params", 1e9),
    "KB": ("size", 1e-3),
    "MB": ("size", 1.0),
    "GB": ("size", 1e3),
}
BASE_UNITS = {"latency": "ms", "energy": "mJ", "flops": "FLOPs", "params": "parameters", "size": "MB"}
PER_DEVICE = ("latency", "energy")  # the costs that differ between devices
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")


class BudgetError(HwnasError):
    """A budget that cannot be parsed or met."""


@dataclass(frozen=True)
class Budget:
    """`objective` <= `limit` (in the objective's base unit: ms, mJ, FLOPs, parameters, MB)."""

    objective: str
    limit: float
    text: str

    def __str__(self) -> str:
        return self.text


def base(objective: str) -> str:
    """`latency@pixel3` -> `latency`."""
    return objective.split("@", 1)[0]


def device_of(objective: str) -> str | None:
    """`latency@pixel3` -> `pixel3`; None for an objective of no device."""
    return objective.split("@", 1)[1] if "@" in objective else None


def parse_budget(text: str) -> Budget:
    """`30ms` -> Budget("latency", 30.0), `pixel3:12ms` -> Budget("latency@pixel3", 12.0); every
    mistake is one `BudgetError` listing the units."""
    device, sep, value_text = text.rpartition(":")
    if sep:
        budget = parse_budget(value_text)
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", device) or budget.objective not in PER_DEVICE:
            raise BudgetError(
                f"budget '{text}': DEVICE:VALUE names a device's latency or energy, like pixel3:12ms or m2:5mJ"
            )
        return Budget(f"{budget.objective}@{device}", budget.limit, text.strip())
    match = _PATTERN.match(text)
    if match is None or match.group(2) not in UNITS:
        raise BudgetError(
            f"budget '{text}' is not a number with a unit; use e.g. 30ms, 500us, 2mJ, 300MFLOPs, 5M (parameters), "
            f"20MB (size); units: {', '.join(UNITS)}"
        )
    value = float(match.group(1))
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget '{text}' must be a positive number")
    objective, factor = UNITS[match.group(2)]
    return Budget(objective, value * factor, text.strip())


def parse_budgets(texts: list[str]) -> list[Budget]:
    """Several budgets at once; one per objective."""
    budgets = [parse_budget(t) for t in texts]
    seen: dict[str, str] = {}
    for b in budgets:
        if b.objective in seen:
            raise BudgetError(f"budgets '{seen[b.objective]}' and '{b.text}' both limit {b.objective}; give one")
        seen[b.objective] = b.text
    return budgets
