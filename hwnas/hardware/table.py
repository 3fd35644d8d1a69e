"""`LatencyTable`: per-block costs on one device for one space (MoSegNAS Eq. 7).

Rows are keyed by `BlockSignature` (the whole truth about a block's cost) and hold the measured
median / p90 / min / CV / n; the table is Parquet with a JSON sidecar that records the device, the
backend and runtime versions, threads, precision, batch, the space (name and digest), the host,
dates, the schema version, the per-call overhead and the calibration.

Each block is measured in several rounds spread over the whole profiling run (this shared machine's
speed drifts by 20-30% over tens of seconds). A row keeps every round's median; `geomean_ms` is
their geometric mean, `median_ms` their median, `min_ms` the fastest call of all rounds, `p90_ms`
and `cv` the worst round's, `mean_ms` and `n` over all calls, `noisy` whether any round stayed
noisy; `ci_low_ms` and `ci_high_ms` the 95% interval around the table's statistic and `precise`
whether it is within the table's `timing_precision` target. The table's `statistic` (`geomean`,
the default since issue 48, chosen by `bench.round_statistic`; `median`, tables before it; or
`min`) is what predictions sum, and `hwnas lut validate` measures whole subnets the same way.

Prediction (MoSegNAS Eq. 7, with the overhead made explicit): each block's median includes one
per-call overhead `o` measured on an identity model, so the raw estimate of a subnet is
`sum_i (t_i - o) + o`; the calibration `a_r * raw + b_r`, one line per input resolution r fitted by
`hwnas lut validate` against end-to-end measurements at r, is applied unless `calibrated=False`. A
resolution without a line of its own is predicted raw (a table calibrated before lines were kept
per resolution holds one line, `ANY_RESOLUTION`, applied at every resolution as it was then). A
missing entry is an error that names it, never a silent zero.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import platform
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hwnas.errors import HwnasError
from hwnas.files import atomic_write_bytes, atomic_write_json
from hwnas.hardware.backends.base import Timing
from hwnas.hardware.precision import Precision, interval, log_standard_error
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature
from hwnas.space.slotcost import SlotCost
from hwnas.space.tasks import default_classes

SCHEMA_VERSION = 5  # 3: blocks as the authors' (issue 20); 4: FocusNet's FRM convolves before upsampling (issue 21);
# 5: each row's 95% interval and whether it is precise (issue 48)
READABLE_SCHEMAS = (3, 4, 5)  # a schema-3 table loads without its `frm` rows, which `hwnas profile` measures again;
# a schema-4 one gets its intervals from the round medians it kept
_BEFORE = {1: "from before the energy columns and the authors' blocks", 2: "from before the authors' blocks"}
SIGNATURE_COLUMNS = [f.name for f in fields(BlockSignature)]
TIMING_COLUMNS = [f.name for f in fields(Timing)]
STATISTICS = ("geomean", "median", "min")  # of each row's round medians; the fastest call of all, for min
ANY_RESOLUTION = "*"  # the key of a calibration line fitted before lines were kept per resolution
ENERGY_COLUMNS = ["energy_mj", "energy_source"]
INTERVAL_COLUMNS = ["geomean_ms", "ci_low_ms", "ci_high_ms", "precise"]
COLUMNS = ["key", *SIGNATURE_COLUMNS, *TIMING_COLUMNS, "rounds", "round_medians_ms", *INTERVAL_COLUMNS, *ENERGY_COLUMNS]
_SCHEMA_4_COLUMNS = [c for c in COLUMNS if c not in INTERVAL_COLUMNS]


class LutError(HwnasError):
    """A latency table is missing, damaged, incompatible or lacks entries."""


def resolution_key(resolution: tuple[int, int] | list[int]) -> str:
    """`WxH`, how calibration lines are keyed."""
    return f"{resolution[0]}x{resolution[1]}"


def default_path(device_name: str, space_name: str, root: str | Path = "lut") -> Path:
    return Path(root) / f"{device_name}-{space_name}.parquet"


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def host_info() -> dict[str, str]:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Prediction:
    """A predicted latency (ms) and its two-sided `confidence` interval."""

    estimate_ms: float
    low_ms: float
    high_ms: float
    confidence: float

    def contains(self, measured_ms: float) -> bool:
        return self.low_ms <= measured_ms <= self.high_ms

    def __str__(self) -> str:
        return f"{self.estimate_ms:.3f} ms ({self.confidence:.0%}: {self.low_ms:.3f}-{self.high_ms:.3f})"


@dataclass(frozen=True)
class Calibration:
    """Linear map from the raw block sum to end-to-end latency: `slope * raw + intercept_ms`."""

    slope: float
    intercept_ms: float
    fitted_on: int

    def apply(self, raw_ms: np.ndarray | float) -> np.ndarray | float:
        return self.slope * raw_ms + self.intercept_ms

    @classmethod
    def fit(cls, raw_ms: np.ndarray, measured_ms: np.ndarray, error_ms: np.ndarray | None = None) -> Calibration:
        """Least squares; with `error_ms` (each measurement's standard error), weighted by its
        inverse, so a subnet measured more surely pulls the line more."""
        weights = None if error_ms is None else 1.0 / np.asarray(error_ms)
        slope, intercept = np.polyfit(np.asarray(raw_ms), np.asarray(measured_ms), 1, w=weights)
        return cls(float(slope), float(intercept), len(raw_ms))


class LatencyTable:
    """Measured block costs for one (device, space, task) with metadata; see the module docstring."""

    def __init__(self, *, meta: dict[str, Any], rows: pd.DataFrame | None = None, space: SearchSpace | None = None):
        self.meta = meta
        records = [] if rows is None else rows.to_dict("records")
        self._rows: dict[str, dict] = {}
        for row in records:
            row["round_medians_ms"] = [float(v) for v in row["round_medians_ms"]]
            if row["energy_mj"] is not None and np.isnan(row["energy_mj"]):
                row["energy_mj"], row["energy_source"] = None, None
            if "precise" not in row:  # a schema-4 table: its intervals from the round medians it kept
                self._set_interval(row)
            row["precise"] = bool(row["precise"])
            self._rows[row["key"]] = row
        self.space = space or SearchSpace.load(meta["space"])
        self._slot_cache: dict[str, SlotCost] = {}

    # ---- construction and files ---------------------------------------------------------
    @classmethod
    def new(
        cls,
        *,
        device: dict,
        versions: dict,
        space: SearchSpace,
        task: str,
        resolutions: list[tuple[int, int]],
        overhead: Timing,
        protocol: dict,
        statistic: str = "geomean",
        classes: int | None = None,
    ) -> LatencyTable:
        """An empty table; `classes` (a classifier's or segmentation head's logits) defaults to the
        task's own (`hwnas.space.tasks.default_classes`), as the arch's signatures take it."""
        if statistic not in STATISTICS:
            raise LutError(f"unknown statistic '{statistic}'; allowed: {', '.join(STATISTICS)}")
        meta = {
            "schema_version": SCHEMA_VERSION,
            "device": device,
            "versions": versions,
            "space": space.name,
            "space_digest": space.digest(),
            "task": task,
            "classes": classes or default_classes(task),
            "resolutions": [list(r) for r in resolutions],
            "host": host_info(),
            "created": now(),
            "statistic": statistic,
            "overhead": overhead.to_dict(),
            "protocol": protocol,
            "calibration": None,
        }
        return cls(meta=meta, space=space)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> LatencyTable:
        """Read a table and its sidecar; damaged, foreign or other-schema files raise `LutError`."""
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            raise LutError(
                f"latency table {path} does not exist; build it with `hwnas profile` (for a device that does not "
                "run here: `hwnas agent` on the device and `hwnas profile --remote URL`)"
            )
        if not side.is_file():
            raise LutError(f"latency table {path} has no sidecar {side}; rebuild it with `hwnas profile`")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LutError(
                f"sidecar {side} is not valid JSON ({exc}); rebuild the table with `hwnas profile`"
            ) from None
        if not isinstance(meta, dict) or meta.get("schema_version") not in READABLE_SCHEMAS:
            got = meta.get("schema_version") if isinstance(meta, dict) else None
            when = ""
            if isinstance(got, int) and got in _BEFORE:
                when = f" ({_BEFORE[got]}: MBConv shortcuts, the SalNAS decoder and its blur cost differently now)"
            raise LutError(
                f"latency table {path} has schema version {got!r}{when}; this hwnas "
                f"reads version {', '.join(map(str, READABLE_SCHEMAS))}: rebuild it with `hwnas profile`"
            )
        try:
            # one thread: pyarrow's reader threads can abort the interpreter at exit (apache/arrow#34314)
            rows = pd.read_parquet(io.BytesIO(path.read_bytes()), use_threads=False)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise LutError(
                f"latency table {path} is damaged or truncated ({type(exc).__name__}); "
                "rerun `hwnas profile` to rebuild it"
            ) from None
        expected = COLUMNS if meta["schema_version"] == SCHEMA_VERSION else _SCHEMA_4_COLUMNS
        if list(rows.columns) != expected or rows["key"].duplicated().any():
            raise LutError(f"latency table {path} has unexpected columns or duplicate rows; rebuild it")
        if meta["schema_version"] == 3:  # its FRM rows timed the 1x1 conv after the upsampling
            rows = rows[rows["op"] != "frm"].reset_index(drop=True)
        meta = {**meta, "schema_version": SCHEMA_VERSION}
        table_space = space if space is not None else _space_of(meta, path)
        if meta.get("space") != table_space.name or meta.get("space_digest") != table_space.digest():
            raise LutError(
                f"latency table {path} was built for space '{meta.get('space')}' "
                f"(digest {meta.get('space_digest')}), not '{table_space.name}' ({table_space.digest()})"
            )
        return cls(meta=meta, rows=rows, space=table_space)

    def save(self, path: str | Path) -> Path:
        """Write the Parquet table and the JSON sidecar, each atomically."""
        path = Path(path)
        self.meta["updated"] = now()
        buffer = io.BytesIO()
        self.rows.to_parquet(buffer, index=False)
        atomic_write_json(sidecar_path(path), self.meta)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    # ---- rows ---------------------------------------------------------------------------
    @property
    def rows(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows.values()), columns=COLUMNS)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, sig: BlockSignature | str) -> bool:
        return (sig.key if isinstance(sig, BlockSignature) else sig) in self._rows

    def rounds_done(self, sig: BlockSignature) -> int:
        row = self._rows.get(sig.key)
        return 0 if row is None else int(row["rounds"])

    def record(self, sig: BlockSignature, timing: Timing) -> None:
        """Add one measurement round of `sig` (see the module docstring for what a row holds)."""
        row = self._rows.get(sig.key)
        if row is None:
            row = {"key": sig.key, **sig.to_dict(), **timing.to_dict(), "rounds": 0, "round_medians_ms": []}
            row.update(energy_mj=None, energy_source=None)
            self._rows[sig.key] = row
        else:
            n = row["n"] + timing.n
            row.update(
                p90_ms=max(row["p90_ms"], timing.p90_ms),
                min_ms=min(row["min_ms"], timing.min_ms),
                mean_ms=(row["mean_ms"] * row["n"] + timing.mean_ms * timing.n) / n,
                cv=max(row["cv"], timing.cv),
                n=n,
                attempts=max(row["attempts"], timing.attempts),
                noisy=bool(row["noisy"] or timing.noisy),
            )
        row["rounds"] += 1
        row["round_medians_ms"] = [*row["round_medians_ms"], timing.median_ms]
        row["median_ms"] = float(np.median(row["round_medians_ms"]))
        self._set_interval(row)
        self._slot_cache = {}

    def _set_interval(self, row: dict) -> None:
        """A row's geometric mean of round medians, its 95% interval around the table's statistic
        (`hwnas.hardware.precision.interval`) and whether that is within the precision target."""
        values = row["round_medians_ms"]
        row["geomean_ms"] = float(np.exp(np.log(values).mean()))
        row["ci_low_ms"], row["ci_high_ms"] = interval(values, estimate=float(row[f"{self.statistic}_ms"]))
        row["precise"] = self.timing_precision.precise(values)

    @property
    def timing_precision(self) -> Precision:
        """What the table's rows were measured to (tables from before issue 48: the default target)."""
        found = self.meta.get("timing_precision") or {}
        return Precision(**{k: found[k] for k in ("target", "min_rounds", "max_rounds", "max_s") if k in found})

    def set_timing_precision(self, precision: Precision) -> None:
        """Measure the rows to `precision` from now on; every row's flag is judged against it again."""
        self.meta["timing_precision"] = precision.to_dict()
        for row in self._rows.values():
            self._set_interval(row)

    def round_values(self, sig: BlockSignature) -> list[float]:
        """The round medians (ms) measured for `sig` so far (empty if none)."""
        row = self._rows.get(sig.key)
        return [] if row is None else list(row["round_medians_ms"])

    def imprecise(self) -> list[str]:
        """The keys of rows whose interval is wider than the precision target."""
        return [key for key, row in self._rows.items() if not row["precise"]]

    def rows_by_key(self, key: str) -> dict:
        """One row as a dict (a copy)."""
        return dict(self._rows[key])

    def record_energy(self, sig: BlockSignature, energy_mj: float, source: str) -> None:
        """Set the energy of one call of `sig`'s block (mJ) and where the figure comes from."""
        if sig.key not in self._rows:
            raise LutError(f"cannot record energy for {sig.key}: the table has no latency row for it")
        self._rows[sig.key].update(energy_mj=float(energy_mj), energy_source=source)
        self._slot_cache = {}

    def energy_missing(self, sigs: list[BlockSignature]) -> list[BlockSignature]:
        return [s for s in dict.fromkeys(sigs) if self._rows.get(s.key, {}).get("energy_mj") is None]

    @property
    def energy_source(self) -> str | None:
        """Where the energy column comes from (`measured-...` / `estimated-...`), None if not profiled."""
        energy = self.meta.get("energy")
        return None if energy is None else energy["source"]

    def missing(self, sigs: list[BlockSignature]) -> list[BlockSignature]:
        return [s for s in dict.fromkeys(sigs) if s.key not in self._rows]

    @property
    def statistic(self) -> str:
        """Which figure of each row predictions sum: `geomean`, `median` or `min` (see the module
        docstring; tables from before it was recorded: `median`)."""
        return self.meta.get("statistic", "median")

    @property
    def classes(self) -> int:
        """The class count of the head the table profiled (its last layer's width): classification's
        and segmentation's; an older table, from before it was recorded, profiled the default (1000)."""
        return int(self.meta.get("classes") or default_classes(self.meta["task"]))

    @property
    def overhead_ms(self) -> float:
        overhead = self.meta["overhead"]  # one timing: its median stands for the geometric mean of rounds
        return float(overhead.get(f"{self.statistic}_ms", overhead["median_ms"]))

    @property
    def calibrations(self) -> dict[str, Calibration]:
        """The calibration lines by resolution (`WxH`, or `ANY_RESOLUTION` in an older table)."""
        cal = self.meta.get("calibration")
        if cal is None:
            return {}
        if "slope" in cal:  # one line for every resolution, as tables were calibrated before
            return {ANY_RESOLUTION: Calibration(cal["slope"], cal["intercept_ms"], cal["fitted_on"])}
        return {k: Calibration(v["slope"], v["intercept_ms"], v["fitted_on"]) for k, v in cal["lines"].items()}

    def calibration_at(self, resolution: tuple[int, int]) -> Calibration | None:
        """The line predictions at `resolution` go through (None: they are raw block sums)."""
        lines = self.calibrations
        return lines.get(resolution_key(resolution), lines.get(ANY_RESOLUTION))

    def set_calibration(self, resolution: tuple[int, int] | None, line: Calibration | None) -> None:
        """Store (or, with None, drop) the line for `resolution` (None: every resolution). A line
        for one resolution replaces an older table's line for all of them."""
        lines = self.calibrations
        key = ANY_RESOLUTION if resolution is None else resolution_key(resolution)
        if key != ANY_RESOLUTION:
            lines.pop(ANY_RESOLUTION, None)
        if line is None:
            lines.pop(key, None)
        else:
            lines[key] = line
        stored = {k: {**v.__dict__} for k, v in lines.items()}
        self.meta["calibration"] = {"lines": stored, "fitted": now()} if stored else None

    def trust(self, resolutions: list[tuple[int, int]]) -> tuple[bool, str]:
        """(checked, one line) on how far its predictions at `resolutions` can be trusted: the held-out
        error of the last end-to-end check (`hwnas lut validate`, or the one that ends `hwnas
        profile`) and whether a calibration line applies, or that it was never checked."""
        checked = self.meta.get("validation") or {}
        errors = checked.get("heldout_mape", {})
        parts, unchecked = [], []
        for resolution in resolutions:
            key = resolution_key(resolution)
            if key not in errors and key not in checked.get("calibration_applied", {}):
                unchecked.append(key)
                continue
            how = "calibrated" if self.calibration_at(resolution) is not None else "raw block sums"
            error = f"held-out error {errors[key]:.1f}% on {checked['heldout_n'][key]} subnets" if key in errors else ""
            parts.append(f"{key} {how}" + (f", {error}" if error else ""))
        if self.prediction is not None:
            parts.insert(0, self.provenance())
            if unchecked:
                return False, (
                    f"{self.provenance()}; not checked on other subnets at {', '.join(unchecked)}: `hwnas lut "
                    "validate` measures how far off it is and calibrates it"
                )
        if unchecked:
            return False, (
                f"never checked against whole subnets at {', '.join(unchecked)}: its latencies are raw block sums, "
                "which miss what runs between blocks and the machine's drift since; `hwnas lut validate` measures "
                "how far off they are and calibrates them"
            )
        return True, "checked against whole subnets: " + "; ".join(parts)

    @property
    def prediction(self) -> dict | None:
        """How the table was predicted (`hwnas profile --few-shot`), None for a measured one."""
        return self.meta.get("predicted")

    def provenance(self) -> str:
        """`measured`, or what a predicted table was predicted from, for every output that uses it."""
        found = self.prediction
        if found is None:
            return "measured"
        sources = ", ".join(s["device"] for s in found["sources"])
        loo = "" if found.get("loo_mape") is None else f", leave-one-out error {found['loo_mape']:.1f}% on them"
        return (
            f"PREDICTED (few-shot: {found['samples']} subnets measured whole on {self.meta['device']['name']}, every "
            f"block from the tables of {sources}{loo})"
        )

    def describe(self, path: str | Path, resolution: tuple[int, int]) -> str:
        """How a prediction at `resolution` was made, for a line beside it: the table's path, whether
        a calibration line applies there, and, for a predicted table, what it was predicted from."""
        calibrated = "calibrated" if self.calibration_at(resolution) is not None else "uncalibrated"
        predicted = "" if self.prediction is None else f", {self.provenance()}"
        return f"{path}, {calibrated}{predicted}"

    def block_ms(self) -> dict[str, float]:
        """Each row's latency (ms, the table's statistic, the per-call overhead included) by key."""
        return self._per_block("latency")[0]

    @property
    def precision(self) -> str:
        """The precision its blocks were built at (tables from before precisions: fp32)."""
        return self.meta["device"].get("precision", "fp32")

    def require_precision(self, precision: str, path: str | Path) -> None:
        """A table predicts the model of its own precision only (an int8 model is not an fp32 one)."""
        if self.precision != precision:
            raise LutError(
                f"latency table {path} was measured at {self.precision}, but the device runs {precision}: "
                f"profile it at {precision} (`hwnas profile --device` with a {precision} spec)"
            )

    def compatibility_warnings(self, device: dict, versions: dict) -> list[str]:
        """Differences between the table's device/runtime and the given ones (a warning each)."""
        notes = []
        for key, value in device.items():
            if self.meta["device"].get(key) != value:
                notes.append(f"table was measured with {key}={self.meta['device'].get(key)!r}, not {value!r}")
        for key, value in versions.items():
            if self.meta["versions"].get(key) != value:
                notes.append(f"table was measured with {key} {self.meta['versions'].get(key)}, this host has {value}")
        return notes

    # ---- prediction ---------------------------------------------------------------------
    def _require(self, sigs: list[BlockSignature]) -> None:
        missing = self.missing(sigs)
        if missing:
            shown = ", ".join(s.key for s in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise LutError(
                f"latency table has no entry for {len(missing)} block(s): {shown}{more}; "
                "profile them with `hwnas profile` (for the resolution used)"
            )

    def raw_ms(self, arch: Arch) -> float:
        """Sum of block medians with the per-call overhead counted once (uncalibrated)."""
        return self._sum(arch, "latency")

    def predict(self, arch: Arch, *, calibrated: bool = True) -> float:
        """Predicted end-to-end latency of `arch` in ms (through its resolution's line, if any)."""
        raw = self.raw_ms(arch)
        cal = self.calibration_at(arch.resolution)
        return float(cal.apply(raw)) if calibrated and cal is not None else raw

    def predict_interval(self, arch: Arch, *, confidence: float = 0.95) -> Prediction:
        """`predict(arch)` with its two-sided `confidence` interval (`spread`)."""
        estimate = self.predict(arch)
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        spread = self._relative_spread(np.array([self._sum(arch, "variance")]), [arch.resolution], estimate)[0]
        return Prediction(estimate, estimate * math.exp(-z * spread), estimate * math.exp(z * spread), confidence)

    def upper_many(self, archs: list[Arch] | np.ndarray, *, confidence: float) -> np.ndarray:
        """Vectorised one-sided upper bounds: each arch's latency is below this with probability
        `confidence` (what `hwnas search --confidence` holds to the budget)."""
        x = self._encoded(archs)
        estimate = self.predict_many(x)
        resolutions = [self.space.resolutions[r] for r in x[:, self.space.gene("resolution")]]
        spread = self._relative_spread(self._sum_many(x, "variance"), resolutions, estimate)
        return estimate * np.exp(float(stats.norm.ppf(confidence)) * spread)

    def _relative_spread(self, variance: np.ndarray, resolutions: list, estimate: np.ndarray | float) -> np.ndarray:
        """The standard error of a prediction on the log scale (see the module docstring): the
        blocks' measurement error (variance in raw ms^2, through the calibration's slope) and the
        calibration's own scatter on whole subnets (`validation.spread`, 0 where never checked)."""
        slopes = np.array([(self.calibration_at(r) or Calibration(1.0, 0.0, 0)).slope for r in resolutions])
        scatter = (self.meta.get("validation") or {}).get("spread", {})
        residual = np.array([scatter.get(resolution_key(r), 0.0) for r in resolutions])
        blocks = np.abs(slopes) * np.sqrt(variance) / np.asarray(estimate)
        return np.sqrt(blocks**2 + residual**2)

    def predict_energy(self, arch: Arch) -> float:
        """Predicted energy of one inference call of `arch` in mJ (block energies, the per-call
        overhead's energy counted once, as for latency); its source is `energy_source`."""
        return self._sum(arch, "energy")

    def predict_many(self, archs: list[Arch] | np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Vectorised `predict` over archs or an encoded matrix (n x n_var) via per-slot lookups."""
        x = self._encoded(archs)
        total = self._sum_many(x, "latency")
        if not calibrated or not self.calibrations:
            return total
        lines = [self.calibration_at(r) or Calibration(1.0, 0.0, 0) for r in self.space.resolutions]
        r = x[:, self.space.gene("resolution")]
        return np.array([c.slope for c in lines])[r] * total + np.array([c.intercept_ms for c in lines])[r]

    def predict_energy_many(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        """Vectorised `predict_energy` (mJ)."""
        return self._sum_many(archs, "energy")

    # ---- sums over blocks -------------------------------------------------------------------
    def _per_block(self, what: str) -> tuple[dict[str, float], float]:
        """Each row's cost of `what` (latency ms, energy mJ, or the variance of its latency, ms^2)
        and the per-call overhead's."""
        if what == "latency":
            return {k: float(r[f"{self.statistic}_ms"]) for k, r in self._rows.items()}, self.overhead_ms
        if what == "variance":  # (the block's own time x its relative standard error)^2; o is exact
            o = self.overhead_ms
            return {
                k: ((float(r[f"{self.statistic}_ms"]) - o) * log_standard_error(r["round_medians_ms"])) ** 2
                for k, r in self._rows.items()
            }, 0.0
        if self.energy_source is None:
            raise LutError("this latency table has no energy column; build it with `hwnas profile --energy`")
        costs = {k: float(r["energy_mj"]) for k, r in self._rows.items() if r["energy_mj"] is not None}
        return costs, float(self.meta["energy"]["overhead_mj"])

    def _sum(self, arch: Arch, what: str) -> float:
        sigs = self.space.block_signatures(arch, self.meta["task"], self.classes)
        self._require(sigs)
        costs, o = self._per_block(what)
        missing = [s.key for s in sigs if s.key not in costs]
        if missing:
            raise LutError(f"latency table has no energy for block(s) {', '.join(missing[:3])}; rerun --energy")
        return float(sum(costs[s.key] - o for s in sigs) + o)

    def lower_bound(self, what: str = "latency", allowed_resolutions: list[int] | None = None) -> float:
        """No subnet's prediction (calibrated, for latency) goes below this (`SlotCost.lower_bound`)."""
        costs, o = self._slot_cost(what)
        bounds = []
        for r in allowed_resolutions or range(len(self.space.resolutions)):
            bound = costs.lower_bound([r]) + o
            cal = self.calibration_at(self.space.resolutions[r]) if what == "latency" else None
            bounds.append(float(cal.apply(bound)) if cal is not None and cal.slope > 0 else bound)
        return min(bounds)

    def _slot_cost(self, what: str) -> tuple[SlotCost, float]:
        costs, o = self._per_block(what)
        if what not in self._slot_cache:
            self._slot_cache[what] = SlotCost(
                self.space,
                lambda sig: costs[sig.key] - o if sig.key in costs else None,
                task=self.meta["task"],
                num_classes=self.classes,
            )
        return self._slot_cache[what], o

    def _encoded(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        x = np.asarray([self.space.encode(a) for a in archs]) if isinstance(archs, list) else np.asarray(archs)
        if x.ndim != 2 or x.shape[1] != self.space.n_var:
            raise LutError(f"predict_many needs archs or an (n, {self.space.n_var}) integer matrix, got {x.shape}")
        return x

    def _sum_many(self, archs: list[Arch] | np.ndarray, what: str) -> np.ndarray:
        x = self._encoded(archs)
        slot_cost, o = self._slot_cost(what)
        total, missing = slot_cost(x)
        if missing:
            label = "" if what == "latency" else f"{what} "
            raise LutError(
                f"latency table has no {label}entry for block(s) {', '.join(missing[:3])}; "
                "profile them with `hwnas profile`"
            )
        return total + o


def _space_of(meta: dict, path: Path) -> SearchSpace:
    try:
        return SearchSpace.load(meta["space"])
    except (KeyError, HwnasError):
        raise LutError(
            f"latency table {path} names space {meta.get('space')!r}, which is not a preset; "
            "pass the space's .toml with --space"
        ) from None
