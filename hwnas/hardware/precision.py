"""`Precision`: how sure a timing must be, and when to stop trying (issue 48, point 1).

A block or a whole subnet is timed in rounds spread over the run (each round one median of many
calls, `hwnas.hardware.backends.base.measure`). Its figure is a statistic of those round medians and
its 95% interval comes from their spread: Student's t on the logs of the round medians (a round's
median is itself an average over many calls, and a slow machine scales every call of a stretch,
so round medians vary by a factor, not by an offset):

    half-width = t(0.975, n - 1) * sd(log x_1 .. log x_n) / sqrt(n)
    interval   = estimate * exp(-half-width) .. estimate * exp(+half-width)

A row is *precise* once that interval is within `target` of its estimate (by default +-3%);
rounds go on for the rows that are not, up to `max_rounds` or until `max_s` seconds have passed,
and rows that stop short are flagged. One round gives no interval (an unbounded one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from hwnas.errors import HwnasError

DEFAULT_TARGET = 0.03  # +-3% of the estimate, the 95% interval's half-width
DEFAULT_MIN_ROUNDS = 3
DEFAULT_MAX_ROUNDS = 6  # 3x the rounds of the fixed protocol before issue 48 (2), the time bound
CONFIDENCE = 0.95
STATISTICS = ("median", "mean", "geomean", "trimmed", "low")  # candidates compared by bench.round_statistic


class PrecisionError(HwnasError):
    """A precision setting out of range."""


@dataclass(frozen=True)
class Precision:
    """Measure until each figure's 95% interval is within +-`target` (a fraction of the figure),
    with at least `min_rounds` and at most `max_rounds` rounds, and no round started after `max_s`
    seconds (None: no time cap)."""

    target: float = DEFAULT_TARGET
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_rounds: int = DEFAULT_MAX_ROUNDS
    max_s: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.target, int | float) and math.isfinite(self.target) and self.target > 0):
            raise PrecisionError(
                f"--precise-to must be a positive percentage (e.g. 3 for +-3%), got {_percent(self.target)}"
            )
        if self.min_rounds < 1:
            raise PrecisionError(f"--rounds must be at least 1, got {self.min_rounds}")
        if self.max_rounds < self.min_rounds:
            raise PrecisionError(
                f"--max-rounds ({self.max_rounds}) must be at least the rounds every row gets ({self.min_rounds})"
            )
        if self.max_s is not None and not self.max_s > 0:
            raise PrecisionError(f"--max-time must be a positive number of seconds, got {self.max_s}")

    @classmethod
    def fixed(cls, rounds: int, *, target: float = DEFAULT_TARGET) -> Precision:
        """Exactly `rounds` rounds for every row, the interval still computed against `target`."""
        return cls(target=target, min_rounds=rounds, max_rounds=rounds)

    @classmethod
    def from_flags(
        cls,
        *,
        rounds: int | None = None,
        percent: float = DEFAULT_TARGET * 100,
        max_rounds: int | None = None,
        max_s: float | None = None,
    ) -> Precision:
        """`hwnas profile`'s flags: `--rounds N` alone is exactly N rounds (as before issue 48), with
        `--max-rounds M` at least N and up to M; neither: the defaults. `percent` is `--precise-to`."""
        target = percent / 100 if isinstance(percent, int | float) else percent
        if rounds is not None and max_rounds is None:
            return cls(target=target, min_rounds=rounds, max_rounds=rounds, max_s=max_s)
        return cls(
            target=target,
            min_rounds=DEFAULT_MIN_ROUNDS if rounds is None else rounds,
            max_rounds=DEFAULT_MAX_ROUNDS if max_rounds is None else max_rounds,
            max_s=max_s,
        )

    def precise(self, values: Sequence[float]) -> bool:
        """Whether round medians `values` already give an interval within the target."""
        return half_width(values) <= math.log1p(self.target)

    def wants_round(self, values: Sequence[float]) -> bool:
        """Whether a row with round medians `values` should be measured once more (the cap aside
        from time): fewer than `min_rounds`, or not yet precise and under `max_rounds`."""
        n = len(values)
        return n < self.min_rounds or (n < self.max_rounds and not self.precise(values))

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence": CONFIDENCE, "interval": "student-t on log round medians"}


def log_standard_error(values: Sequence[float]) -> float:
    """sd(log x) / sqrt(n) of round medians `values`: the relative standard error of their
    (geometric) mean (inf for fewer than two rounds)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return math.inf
    return float(np.log(x).std(ddof=1) / math.sqrt(len(x)))


def half_width(values: Sequence[float]) -> float:
    """The 95% interval's half-width on the log scale (inf for fewer than two rounds, 0 for rounds
    that agree exactly)."""
    se = log_standard_error(values)
    return se if math.isinf(se) else float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * se)


def interval(values: Sequence[float], *, estimate: float | None = None) -> tuple[float, float]:
    """(low, high) of the 95% interval around `estimate` (default: the median of `values`)."""
    centre = float(np.median(values)) if estimate is None else estimate
    h = half_width(values)
    if math.isinf(h):
        return 0.0, math.inf
    return centre * math.exp(-h), centre * math.exp(h)


def statistic_of(values: Sequence[float], name: str) -> float:
    """One figure from round medians: `median`, `mean`, `geomean`, `trimmed` (20% cut from each end)
    or `low` (the lower quartile)."""
    x = np.asarray(values, dtype=np.float64)
    if name == "median":
        return float(np.median(x))
    if name == "mean":
        return float(x.mean())
    if name == "geomean":
        return float(np.exp(np.log(x).mean()))
    if name == "trimmed":
        return float(stats.trim_mean(x, 0.2))
    if name == "low":
        return float(np.quantile(x, 0.25))
    raise PrecisionError(f"unknown statistic '{name}'; allowed: {', '.join(STATISTICS)}")


def _percent(value: object) -> str:
    return f"{value * 100:g}%" if isinstance(value, int | float) else repr(value)
