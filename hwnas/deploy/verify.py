"""Verification of a written artifact: numerics against the PyTorch static subnet on fixed inputs,
then end-to-end latency with the shared protocol beside the latency table's prediction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.deploy.formats.base import Tolerance
from hwnas.errors import HwnasError
from hwnas.hardware.backends import Protocol, Runnable, get_backend
from hwnas.hardware.backends.base import Artifact
from hwnas.hardware.device import Device
from hwnas.hardware.measurer import DEFAULT_STATISTIC, aggregate, measure_rounds
from hwnas.hardware.precision import interval
from hwnas.hardware.table import LatencyTable, Prediction
from hwnas.space import Arch, SearchSpace
from hwnas.space.tasks import is_segmentation

VERIFIED, FAILED, NOT_HERE = "verified", "failed", "not verified here"


@dataclass(frozen=True)
class Numerics:
    """Largest differences over `inputs` fixed inputs; `max_rel` is max_abs over the largest |torch| output."""

    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    inputs: int
    passed: bool


@dataclass(frozen=True)
class Speed:
    """Measured end-to-end latency on `device`, with the 95% interval of its rounds, beside what the
    table predicted for the same subnet, with its 95% interval (issue 48: neither is a point)."""

    device: str
    measured_ms: float
    statistic: str
    rounds: int
    table_ms: float | None
    table: str
    budget_ms: float | None = None  # the latency budget the arch was searched under on this device
    measured_low_ms: float = 0.0
    measured_high_ms: float = float("inf")
    table_low_ms: float | None = None
    table_high_ms: float | None = None

    @property
    def delta_pct(self) -> float | None:
        return None if self.table_ms is None else 100 * (self.measured_ms - self.table_ms) / self.table_ms

    @property
    def verdict(self) -> str | None:
        """`keeps`, `breaks` or `undecided` (the budget inside the measurement's interval); None without a budget."""
        return None if self.budget_ms is None else budget_verdict(self.measured_low_ms, self.measured_high_ms,
                                                                  self.budget_ms)  # fmt: skip

    @property
    def within_budget(self) -> bool | None:
        """True where the whole measured interval keeps the budget, False where it breaks it, None
        where undecided or without a budget."""
        return {"keeps": True, "breaks": False}.get(self.verdict)

    @property
    def within_table_interval(self) -> bool | None:
        """Whether the measured latency lies inside the table's 95% interval (None: no table)."""
        if self.table_low_ms is None:
            return None
        return self.table_low_ms <= self.measured_ms <= self.table_high_ms

    def line(self) -> str:
        measured = f"measured {self.measured_ms:.3f} ms {_interval(self.measured_low_ms, self.measured_high_ms)}"
        if self.table_ms is None:
            return f"{measured}, no table"
        inside = "inside" if self.within_table_interval else "OUTSIDE"
        return (
            f"table {self.table_ms:.3f} ms {_interval(self.table_low_ms, self.table_high_ms)}, {measured}, "
            f"{self.delta_pct:+.1f}%, {inside} the table's interval"
        )

    def budget_line(self) -> str | None:
        """Whether the measured latency keeps the search's budget, by how much, and why not."""
        if self.budget_ms is None:
            return None
        return budget_line(
            self.device, (self.measured_ms, self.measured_low_ms, self.measured_high_ms), self.budget_ms,
            self.table_ms, self.table,
        )  # fmt: skip


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or not np.isfinite(high):
        return "(no interval: one round)"
    return f"(95%: {low:.3f}-{high:.3f})"


def budget_verdict(low_ms: float, high_ms: float, budget_ms: float) -> str:
    """`keeps` where the measurement's whole 95% interval is within the budget, `breaks` where all
    of it is over, else `undecided`."""
    if high_ms <= budget_ms:
        return "keeps"
    return "breaks" if low_ms > budget_ms else "undecided"


def budget_line(
    device: str, measured: tuple[float, float, float], budget_ms: float, table_ms: float | None, table: str
) -> str:
    """One line on a measured latency (ms, and its 95% interval) against the budget its arch was
    searched under: the margin left, the overshoot and what the table predicted (the why: its error,
    calibrated or not), or that the budget lies inside the measurement's interval."""
    ms, low, high = measured
    over = ms - budget_ms
    verdict = budget_verdict(low, high, budget_ms)
    if verdict == "keeps":
        return (
            f"{device}: measured {ms:.3f} ms {_interval(low, high)} keeps the {budget_ms:.3f} ms budget it was "
            f"searched under ({-over:.3f} ms, {-100 * over / budget_ms:.0f}% to spare)"
        )
    if verdict == "undecided":
        return (
            f"{device}: measured {ms:.3f} ms {_interval(low, high)}: the {budget_ms:.3f} ms budget it was searched "
            "under lies inside the measurement's interval, so whether it keeps it is UNDECIDED on this machine now; "
            "measure again with more --rounds on a quieter machine (`hwnas doctor`), or search under a lower budget"
        )
    why = "no table predicted it"
    if table_ms is not None:
        why = f"the table ({table}) predicted {table_ms:.3f} ms, {100 * (ms - table_ms) / table_ms:+.0f}% off"
    return (
        f"{device}: measured {ms:.3f} ms {_interval(low, high)} BREAKS the {budget_ms:.3f} ms budget it was "
        f"searched under, by {over:.3f} ms ({100 * over / budget_ms:+.0f}%): {why}; check the table with `hwnas lut "
        f"validate --device {device}` and search again, or search under a lower budget"
    )


def measured_interval(per_round: np.ndarray, statistic: str) -> tuple[float, float, float]:
    """(figure, low, high) of one model's rounds (`measure_rounds`' column): the statistic over
    rounds and the 95% interval of its round values (`hwnas.hardware.precision.interval`)."""
    figure = float(aggregate(per_round, statistic)[0])
    low, high = interval(per_round[:, 0], estimate=figure)
    return figure, low, high


@dataclass(frozen=True)
class Verification:
    status: str
    reason: str = ""
    numerics: Numerics | None = None
    speed: Speed | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.speed is not None:
            out["speed"]["delta_pct"] = self.speed.delta_pct
            out["speed"]["line"] = self.speed.line()
            out["speed"]["within_budget"] = self.speed.within_budget
            out["speed"]["budget_verdict"] = self.speed.verdict
            out["speed"]["within_table_interval"] = self.speed.within_table_interval
            out["speed"]["budget_line"] = self.speed.budget_line()
        return out


def fixed_inputs(shape: tuple[int, ...], count: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal inputs (images after mean/std normalisation are about N(0, 1))."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def compare(runnable: Runnable, reference: nn.Module, inputs: list[np.ndarray], tolerance: Tolerance) -> Numerics:
    """Run the artifact and the PyTorch module on the same inputs; first outputs compared."""
    max_abs, scale, passed = 0.0, 0.0, True
    for x in inputs:
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        got = np.asarray(runnable.run([x])[0], dtype=np.float32).reshape(expected.shape)
        diff = np.abs(got - expected)
        max_abs, scale = max(max_abs, float(diff.max())), max(scale, float(np.abs(expected).max()))
        passed &= bool(np.all(diff <= tolerance.bound(expected)))
    return Numerics(
        max_abs, max_abs / scale if scale > 0 else max_abs, tolerance.atol, tolerance.rtol, len(inputs), passed
    )


def table_prediction(
    path: Path, space: SearchSpace, arch: Arch, task: str, num_classes: int = 1000, precision: str = "fp32"
) -> tuple[Prediction | None, str, str]:
    """(the table's prediction with its 95% interval, or None; a note naming the table or why there
    is no prediction; its statistic)."""
    if not path.exists():
        return None, f"no table at {path}: `hwnas profile` builds one", DEFAULT_STATISTIC
    try:
        table = LatencyTable.load(path, space)
        if table.precision != precision:
            return None, f"{path} was measured at {table.precision}, not {precision}", table.statistic
        if table.meta.get("task") != task:
            return None, f"{path} profiles the {table.meta.get('task')} head, not {task}", table.statistic
        if is_segmentation(task) and table.classes != num_classes:
            return None, f"{path} profiles {table.classes} classes, not {num_classes}", table.statistic
        return table.predict_interval(arch), table.describe(path, arch.resolution), table.statistic
    except HwnasError as exc:
        return None, f"{path}: {exc}", DEFAULT_STATISTIC


def measure_speed(
    device: Device,
    artifact: Artifact,
    arch: Arch,
    space: SearchSpace,
    task: str,
    table_path: Path,
    *,
    num_classes: int = 1000,
    rounds: int = 3,
    protocol: Protocol | None = None,
    budget_ms: float | None = None,
) -> Speed:
    """End-to-end latency of `artifact` on `device` in `rounds` interleaved rounds (as `lut validate`),
    aggregated with the table's statistic, with its 95% interval, beside the table's prediction for
    `arch` (with its interval) and the latency budget `budget_ms` it was searched under, if any."""
    predicted, note, statistic = table_prediction(table_path, space, arch, task, num_classes, device.precision)
    per_round = measure_rounds(get_backend(device), [artifact], rounds=rounds, statistic=statistic, protocol=protocol)
    measured, low, high = measured_interval(per_round, statistic)
    return Speed(
        device.name, measured, statistic, rounds, None if predicted is None else predicted.estimate_ms, note,
        budget_ms, low, high, None if predicted is None else predicted.low_ms,
        None if predicted is None else predicted.high_ms,
    )  # fmt: skip
