"""Energy meters, energy per inference and carbon (SalNAS's power / emission measures).

One interface, `EnergyMeter.start()` / `stop() -> Energy`, four sources, each named all the way to
the CLI, tables and exports so an estimate is never shown as a measurement:

- `measured-nvml`: NVML's total-energy counter of an NVIDIA GPU (mJ since driver load; it updates
  every 20-100 ms, so windows are at least 1 s);
- `measured-rapl`: Linux powercap RAPL package counters (`energy_uj`), wrap-around handled with
  `max_energy_range_uj`;
- `estimated-codecarbon`: CodeCarbon's offline tracker (CPU power from load and a TDP table, plus
  RAM), for a country's grid;
- `estimated-spec`: the device spec's power model, active watts x busy time.

`choose_meter` picks the first that works in that order (or the spec's `meter`). Energy per
inference runs calls in a window long enough for the meter and, for measured sources, subtracts
the idle power of a matching idle window. Carbon = energy x the grid intensity of the region
(CodeCarbon's offline country data, gCO2eq/kWh).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.hardware.device import Device, PowerModel

SOURCES = ("measured-nvml", "measured-rapl", "estimated-codecarbon", "estimated-spec")
RAPL_ROOT = Path("/sys/class/powercap")
J_PER_KWH = 3.6e6
SALNAS_PASSES, SALNAS_BATCH = 200, 64  # SalNAS Section 4: CodeCarbon over 200 passes of batch 64


class EnergyError(HwnasError):
    """A meter is unavailable or failed, or an energy setting (region, power model) is invalid."""


@dataclass(frozen=True)
class Energy:
    """Energy over one window and where the figure comes from."""

    joules: float
    seconds: float
    source: str

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    @property
    def measured(self) -> bool:
        return self.source.startswith("measured")


class EnergyMeter(ABC):
    source: str = ""
    min_window_s: float = 0.0

    @abstractmethod
    def start(self) -> None:
        """Begin a window."""

    @abstractmethod
    def stop(self) -> Energy:
        """End the window; raises `EnergyError` if the meter failed during it."""


# ---- NVML ------------------------------------------------------------------------------------
class NvmlMeter(EnergyMeter):
    """NVIDIA GPU energy from `nvmlDeviceGetTotalEnergyConsumption` (Volta and later).

    `nvml` is the `pynvml` module (nvidia-ml-py); tests pass a recorded stand-in.
    """

    source = "measured-nvml"
    min_window_s = 1.0

    def __init__(self, index: int = 0, nvml=None):
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                raise EnergyError("NVML needs nvidia-ml-py: pip install 'hwnas[energy]'") from None
        self.nvml = nvml
        try:
            nvml.nvmlInit()
            self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:  # pynvml raises NVMLError subclasses for every failure
            raise EnergyError(f"NVML cannot read GPU {index}'s energy counter ({exc})") from None
        self._start: tuple[float, int] | None = None

    def _read_mj(self) -> int:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:
            raise EnergyError(f"the NVML energy counter stopped answering mid-window ({exc})") from None

    def start(self) -> None:
        self._start = (time.perf_counter(), self._read_mj())

    def stop(self) -> Energy:
        if self._start is None:
            raise EnergyError("meter stopped before it was started")
        t0, e0 = self._start
        e1, t1 = self._read_mj(), time.perf_counter()
        self._start = None
        return Energy((e1 - e0) / 1000.0, t1 - t0, self.source)


# ---- RAPL ------------------------------------------------------------------------------------
def rapl_domains(root: str | Path = RAPL_ROOT) -> list[Path]:
    """The package-level RAPL zones (`intel-rapl:N`, not their sub-zones) under `root`."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if re.fullmatch(r"intel-rapl:\d+", p.name))


class RaplMeter(EnergyMeter):
    """CPU package energy from Linux powercap RAPL counters (microjoules, wrapping)."""

    source = "measured-rapl"
    min_window_s = 0.5

    def __init__(self, root: str | Path = RAPL_ROOT):
        self.domains = rapl_domains(root)
        if not self.domains:
            raise EnergyError(f"no RAPL package zones under {root} (not an Intel/AMD Linux host, or a VM)")
        self.ranges = [self._read(d / "max_energy_range_uj") for d in self.domains]
        self._counters()  # readable now, or a clear error (often root-only)
        self._start: tuple[float, list[int]] | None = None

    @staticmethod
    def _read(path: Path) -> int:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EnergyError(f"cannot read RAPL counter {path} ({exc}); it is often readable by root only") from None

    def _counters(self) -> list[int]:
        return [self._read(d / "energy_uj") for d in self.domains]

    def start(self) -> None:
        self._start = (time.perf_counter(), self._counters())

    def stop(self) -> Energy:
        if self._start is None:
            raise EnergyError("meter stopped before it was started")
        t0, before = self._start
        after, t1 = self._counters(), time.perf_counter()
        self._start = None
        total = sum(rapl_delta(b, a, r) for b, a, r in zip(before, after, self.ranges, strict=True))
        return Energy(total / 1e6, t1 - t0, self.source)


def rapl_delta(before_uj: int, after_uj: int, range_uj: int) -> int:
    """Energy between two readings of a counter that wraps at `range_uj` (at most one wrap; the
    convention of CodeCarbon and the kernel's powercap tools: `after + range - before`)."""
    return after_uj - before_uj if after_uj >= before_uj else after_uj + range_uj - before_uj


# ---- estimates -------------------------------------------------------------------------------
class CodeCarbonMeter(EnergyMeter):
    """CodeCarbon's offline tracker for the process; an estimate (no hardware counter here)."""

    source = "estimated-codecarbon"
    min_window_s = 1.0

    def __init__(self, region: str):
        self.region = check_region(region)
        self._tracker = None

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        # codecarbon's own logger at ERROR for good (its log_level= does the same, but only after
        # logging the tracker's creation, and its power-sampling thread logs once more after stop)
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.region,
            measure_power_secs=1,
            output_methods=[],  # no emissions.csv: the caller reports the figures
            log_level="error",
            tracking_mode="process",
        )
        self._tracker.start()
        self._t0 = time.perf_counter()

    def stop(self) -> Energy:
        if self._tracker is None:
            raise EnergyError("meter stopped before it was started")
        self._tracker.stop()
        seconds = time.perf_counter() - self._t0
        data, self._tracker = self._tracker.final_emissions_data, None
        if data is None or data.energy_consumed is None:
            raise EnergyError("CodeCarbon returned no energy for the window")
        return Energy(float(data.energy_consumed) * J_PER_KWH, seconds, self.source)


class SpecMeter(EnergyMeter):
    """The device spec's power model: active watts x the window (the device is busy throughout)."""

    source = "estimated-spec"

    def __init__(self, power: PowerModel):
        self.power = power
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> Energy:
        if self._t0 is None:
            raise EnergyError("meter stopped before it was started")
        seconds, self._t0 = time.perf_counter() - self._t0, None
        return Energy(self.power.active_w * seconds, seconds, self.source)


# ---- choosing a meter ------------------------------------------------------------------------
def _runs_on_gpu(device: Device) -> bool:
    return device.backend == "tensorrt" or (device.backend == "torch" and device.torch_device == "cuda")


def require_power(device: Device) -> PowerModel:
    if device.power is None:
        raise EnergyError(
            f"device '{device.name}' has no power model for energy estimates; add a [power] table with "
            "active_w and idle_w (watts) to its spec"
        )
    return device.power


def choose_meter(device: Device, *, kind: str | None = None, region: str | None = None) -> EnergyMeter:
    """The meter for `device`: `kind` (or the spec's `meter`), else the first available of
    NVML (GPU devices), RAPL (CPU devices), CodeCarbon, the spec's power model."""
    kind = kind or device.meter
    region = region or device.region or "USA"
    if kind == "nvml":
        return NvmlMeter()
    if kind == "rapl":
        return RaplMeter()
    if kind == "codecarbon":
        return CodeCarbonMeter(region)
    if kind == "spec":
        return SpecMeter(require_power(device))
    if kind != "auto":
        raise EnergyError(f"unknown meter '{kind}'; allowed: auto, nvml, rapl, codecarbon, spec")
    hardware = NvmlMeter if _runs_on_gpu(device) else RaplMeter
    with contextlib.suppress(EnergyError):
        return hardware()
    with contextlib.suppress(ImportError):
        import codecarbon  # noqa: F401

        return CodeCarbonMeter(region)
    return SpecMeter(require_power(device))


# ---- energy per inference and carbon --------------------------------------------------------
@dataclass(frozen=True)
class InferenceEnergy:
    """Energy of `inferences` inferences (`calls` calls of `batch`) over `seconds`, idle power removed
    where the meter measures (`idle_watts`, 0 for estimates)."""

    joules_per_inference: float
    watts: float
    idle_watts: float
    throughput: float
    inferences: int
    calls: int
    batch: int
    seconds: float
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def measure_inference_energy(
    call: Callable[[], object],
    meter: EnergyMeter,
    *,
    batch: int = 1,
    calls: int | None = None,
    min_window_s: float = 1.0,
    latency_ms: float | None = None,
) -> InferenceEnergy:
    """Run `call` (one pass of `batch` inputs) at least `calls` times and for at least the meter's
    window; measured sources get the idle power of an equally long idle window subtracted."""
    window = max(min_window_s, meter.min_window_s)
    if latency_ms is None:
        start = time.perf_counter()
        call()
        latency_ms = (time.perf_counter() - start) * 1000
    n = max(calls or 1, math.ceil(window * 1000 / max(latency_ms, 1e-3)))
    meter.start()
    start = time.perf_counter()
    for _ in range(n):
        call()
    busy = time.perf_counter() - start
    energy = meter.stop()
    idle_w = 0.0
    if energy.measured:
        meter.start()
        time.sleep(busy)
        idle_w = meter.stop().watts
    joules = max(energy.joules - idle_w * energy.seconds, 0.0)
    inferences = n * batch
    return InferenceEnergy(
        joules_per_inference=joules / inferences,
        watts=joules / energy.seconds if energy.seconds > 0 else 0.0,
        idle_watts=idle_w,
        throughput=inferences / busy,
        inferences=inferences,
        calls=n,
        batch=batch,
        seconds=busy,
        source=energy.source,
    )


def _energy_mix() -> dict:
    try:
        from codecarbon.input import DataSource
    except ImportError:
        raise EnergyError("carbon figures need CodeCarbon's country data: pip install 'hwnas[energy]'") from None
    return DataSource().get_global_energy_mix_data()


def check_region(region: str) -> str:
    """A country CodeCarbon's offline data knows (ISO 3166 alpha-3, e.g. USA, FRA, CHN)."""
    mix = _energy_mix()
    if not isinstance(region, str) or region not in mix:
        near = ", ".join(k for k in sorted(mix) if isinstance(region, str) and k[:1] == region[:1].upper())
        raise EnergyError(
            f"region '{region}' is not in CodeCarbon's offline data; use an ISO 3166 alpha-3 code"
            + (f" (starting with {region[:1].upper()}: {near})" if near else " such as USA, FRA, CHN")
        )
    return region


def grid_intensity(region: str) -> float:
    """gCO2eq per kWh of the region's electricity (CodeCarbon's global energy mix data)."""
    return float(_energy_mix()[check_region(region)]["carbon_intensity"])


@dataclass(frozen=True)
class Carbon:
    """gCO2eq per 1,000 inferences and per the SalNAS protocol (200 passes of batch 64)."""

    region: str
    intensity_g_per_kwh: float
    g_per_1000: float
    g_salnas: float
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def carbon(energy: InferenceEnergy, region: str) -> Carbon:
    intensity = grid_intensity(region)
    grams = lambda n: energy.joules_per_inference * n / J_PER_KWH * intensity  # noqa: E731
    return Carbon(region, intensity, grams(1000), grams(SALNAS_PASSES * SALNAS_BATCH), energy.source)
