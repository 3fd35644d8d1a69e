"""What on the measuring machine could make timings wrong, and how noisy it measures now (`hwnas
doctor`; issue 48, point 2).

`check_machine` reads what the OS exposes, each where readable (pyperf's `system show` and Google
Benchmark's "CPU scaling is enabled" warning check the same things): the frequency governor (any
but `performance` lets the clock follow the load), turbo boost (it lets the clock follow the
temperature), other processes' CPU use and the VM's steal time over the check (psutil), thermal
throttling events during the check, and the power source. Then it measures: the sentinel, one
fixed small block (`SENTINEL`), timed in short windows for `seconds` through the device's own
`Measurer` (so `--remote` measures on the agent's machine); the noise is the coefficient of
variation of the window medians. The verdict is `noisy` where the noise is above `NOISY_CV` or
another process or the hypervisor takes more than `BUSY_SHARE` of one core.

`Watch` keeps timing the sentinel while `hwnas profile` measures (between chunks of blocks): a
chunk measured while the sentinel was out of its quiet band (more than `BAND` above the quiet
level: the 10th percentile of every sentinel timing so far) is measured again, and while the
machine stays busy it waits, up to `WAIT_S`, telling the caller; with `strict` it stops instead.
Its trace goes into the table's sidecar.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from hwnas.errors import HwnasError
from hwnas.hardware.backends import Protocol
from hwnas.space.signature import BlockSignature

# A 3x3 convolution, 64 channels at 48x64: 1.3-1.5 ms on ONNX Runtime here, its windows (the
# measurement protocol's median of a few dozen calls) varying 4-6% idle. Smaller sentinels vary
# more than the machine does (an MBConv of 0.15 ms: 11-20%, its calls too short to time steadily).
SENTINEL = BlockSignature(op="conv", h=48, w=64, cin=64, cout=64, kernel=3, stride=1, act="relu")
NOISY_CV = 0.10  # the sentinel's windows varying by more than this: a noisy machine (idle here: 6-14%)
BUSY_SHARE = 0.10  # of one core, taken by other processes or by the hypervisor (steal)
BAND = 0.25  # the sentinel more than this above its quiet level: busy (idle here: 1-13% of windows)
WAIT_S = 60.0  # how long profile waits for a busy machine before measuring anyway (flagged)
CHECK_S = 2.0  # the check before `hwnas profile` and `hwnas lut validate` measure
MAX_WINDOWS = 100  # sentinel windows a check times at most (a fast runtime fills 2 s with more)
WINDOWS_PER_CALL = 4


class NoisyMachine(HwnasError):
    """The machine is too busy to measure on, and `--strict` was given."""


@dataclass(frozen=True)
class MachineCheck:
    """Findings (name -> what was read, or why nothing could be), the problems among them, and the
    sentinel's measured noise."""

    findings: dict[str, str]
    problems: list[str]
    sentinel_ms: float
    noise_cv: float
    windows_ms: list[float]
    where: str = "local"

    @property
    def noisy(self) -> bool:
        return bool(self.problems) or self.noise_cv > NOISY_CV

    def line(self) -> str:
        """One line: the verdict, the measured noise and what was found."""
        verdict = "NOISY" if self.noisy else "quiet"
        found = "; ".join(self.problems) if self.problems else "nothing loading it"
        return (
            f"machine {verdict}: the sentinel varies {self.noise_cv:.1%} between windows "
            f"({self.sentinel_ms:.3f} ms, {len(self.windows_ms)} windows; noisy above {NOISY_CV:.0%}); {found}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "noisy": self.noisy, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def check_machine(measurer, *, seconds: float = 3.0, protocol: Protocol | None = None) -> MachineCheck:
    """`hwnas doctor` of `measurer`'s machine (a `hwnas.hardware.measurer.Measurer`): the OS's
    findings there and the sentinel's noise over `seconds`, each window timed by `protocol` (the
    measurement's own; default `Protocol()`). A remote measurer's machine reports only its noise
    (the agent exposes no OS readings)."""
    local = measurer.where == "local"
    before = _system_sample() if local else None
    windows = _sentinel_windows(measurer, seconds, protocol or Protocol())
    findings, problems = _findings(before) if local else ({"os": "not readable through the agent"}, [])
    cv = float(np.std(windows, ddof=1) / np.mean(windows)) if len(windows) > 1 else 0.0
    return MachineCheck(findings, problems, float(np.median(windows)), cv, windows, measurer.where)


def check_before_measuring(
    measurer,
    *,
    strict: bool = False,
    on_check: Callable[[MachineCheck], None] | None = None,
    protocol: Protocol | None = None,
) -> MachineCheck:
    """The check `hwnas profile` and `hwnas lut validate` run first (told to `on_check`). With
    `strict`, a machine whose state cannot be read (an agent's) is refused before the check, and
    a noisy one after it, each with one `HwnasError` before anything is measured or written."""
    if strict:
        require_readable_state(measurer.where)
    check = check_machine(measurer, seconds=CHECK_S, protocol=protocol)
    if on_check is not None:
        on_check(check)
    if strict and check.noisy:
        raise NoisyMachine(f"{check.line()}; stopped before measuring (--strict)")
    return check


def require_readable_state(where: str) -> None:
    """`--strict` judges the machine's state, which only this host's OS shows (`where`: "local" or
    an agent's URL); one `NoisyMachine` line otherwise."""
    if where != "local":
        raise NoisyMachine(
            f"--strict needs the measuring machine's state (governor, other processes, steal), which the agent at "
            f"{where} does not report: drop --strict, or measure on the device itself"
        )


def _sentinel_windows(measurer, seconds: float, protocol: Protocol) -> list[float]:
    windows: list[float] = []
    start = time.monotonic()
    while (time.monotonic() - start < seconds or len(windows) < 3) and len(windows) < MAX_WINDOWS:
        # a few windows per call: an agent converts the sentinel once per job
        windows += [timing.median_ms for _, timing in measurer.blocks([SENTINEL] * WINDOWS_PER_CALL, protocol)]
    return windows


def _system_sample() -> dict:
    import psutil

    own = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    times = {}
    for process in psutil.process_iter(["pid"]):
        try:
            times[process.pid] = sum(process.cpu_times()[:2])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {
        "at": time.monotonic(),
        "cpu": psutil.cpu_times(),
        "procs": times,
        "own": own,
        "throttle": _throttle_count(),
    }


def _findings(before: dict) -> tuple[dict[str, str], list[str]]:
    import psutil

    after = _system_sample()
    elapsed = after["at"] - before["at"]
    findings: dict[str, str] = {}
    problems: list[str] = []
    others = sum(
        max(0.0, t - before["procs"].get(pid, t))
        for pid, t in after["procs"].items()
        if pid not in before["own"] | after["own"]
    )
    share = others / elapsed if elapsed > 0 else 0.0
    findings["other processes"] = f"{share:.0%} of one core"
    if share > BUSY_SHARE:
        problems.append(f"other processes took {share:.0%} of one core")
    steal = (getattr(after["cpu"], "steal", 0.0) - getattr(before["cpu"], "steal", 0.0)) / elapsed if elapsed else 0.0
    findings["steal"] = f"{steal:.0%} of one core" if hasattr(after["cpu"], "steal") else "not readable"
    if steal > BUSY_SHARE:
        problems.append(f"the hypervisor stole {steal:.0%} of one core (a shared VM)")
    governors = sorted({_read(path) for path in glob.glob("/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")})
    findings["governor"] = ", ".join(governors) if governors else "not readable (no cpufreq here)"
    if governors and governors != ["performance"]:
        problems.append(f"frequency governor {', '.join(governors)} (not performance: the clock follows the load)")
    findings["boost"] = _boost()
    if findings["boost"] == "on":
        problems.append("turbo boost on (the clock follows the temperature)")
    if before["throttle"] is None:
        findings["thermal throttling"] = "not readable"
    else:
        events = after["throttle"] - before["throttle"]
        findings["thermal throttling"] = f"{events} events during the check"
        if events:
            problems.append(f"the CPU was thermally throttled {events} times during the check")
    battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
    findings["power"] = "mains (no battery)" if battery is None else ("mains" if battery.power_plugged else "battery")
    if battery is not None and not battery.power_plugged:
        problems.append("on battery (the clock may be capped)")
    return findings, problems


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return "unreadable"


def _boost() -> str:
    if os.path.exists("/sys/devices/system/cpu/cpufreq/boost"):
        return "on" if _read("/sys/devices/system/cpu/cpufreq/boost") == "1" else "off"
    if os.path.exists("/sys/devices/system/cpu/intel_pstate/no_turbo"):
        return "off" if _read("/sys/devices/system/cpu/intel_pstate/no_turbo") == "1" else "on"
    return "not readable"


def _throttle_count() -> int | None:
    paths = glob.glob("/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count")
    counts = [_read(p) for p in paths]
    return sum(int(c) for c in counts if c.isdigit()) if paths else None


@dataclass
class Watch:
    """The sentinel timed after each chunk of a measurement (see the module docstring): the caller
    measures `[*chunk, SENTINEL]` in one go and asks `keep(last)`; a chunk is kept only if the
    sentinel was in its band before it (after the chunk before, or at the check) and after it, else
    the caller calls `settle()` and measures the chunk again. `trace` holds (seconds since start,
    ms) of every sentinel timing."""

    measurer: object
    protocol: Protocol = field(default_factory=Protocol)  # the measurement's own, the check's too
    strict: bool = False
    on_wait: Callable[[str], None] = lambda message: None
    wait_s: float = WAIT_S
    trace: list[tuple[float, float]] = field(default_factory=list)
    rejected: int = 0
    waited_s: float = 0.0
    _start: float = field(default_factory=time.monotonic)
    _quiet_before: bool = True

    def seed(self, windows_ms: list[float]) -> None:
        """Start from the machine check's sentinel windows."""
        self.trace += [(0.0, ms) for ms in windows_ms]

    def quiet_ms(self) -> float:
        return float(np.percentile([ms for _, ms in self.trace], 10))

    def _in_band(self, ms: float) -> bool:
        self.trace.append((round(time.monotonic() - self._start, 3), float(ms)))
        return ms <= self.quiet_ms() * (1 + BAND)

    def keep(self, after_ms: float) -> bool:
        """Whether a chunk followed by the sentinel timing `after_ms` is kept."""
        quiet_after = self._in_band(after_ms)
        kept, self._quiet_before = self._quiet_before and quiet_after, quiet_after
        self.rejected += not kept
        return kept

    def settle(self) -> None:
        """Return once the sentinel is back in its band, timing it every half second and saying so;
        after `wait_s`, go on (what is measured then carries its wide interval), or with `strict`
        raise `NoisyMachine`."""
        started = time.monotonic()
        self.on_wait(self._busy("waiting for it to settle"))
        while time.monotonic() - started < self.wait_s:
            time.sleep(0.5)
            [(_, timing)] = list(self.measurer.blocks([SENTINEL], self.protocol))  # read to the end: an agent's job
            if self._in_band(timing.median_ms):
                self.waited_s += time.monotonic() - started
                self._quiet_before = True
                return
        self.waited_s += time.monotonic() - started
        self._quiet_before = True  # measured anyway: the next chunk is judged by what follows it
        if self.strict:
            raise NoisyMachine(self._busy(f"still busy after {self.wait_s:.0f} s; stopped (--strict)"))
        self.on_wait(self._busy(f"still busy after {self.wait_s:.0f} s; measuring anyway"))

    def _busy(self, what: str) -> str:
        last = self.trace[-1][1]
        return (
            f"the machine is busy: the sentinel takes {last:.3f} ms against {self.quiet_ms():.3f} ms when quiet "
            f"(+{last / self.quiet_ms() - 1:.0%}); {what}"
        )

    def to_dict(self) -> dict:
        return {
            "sentinel": SENTINEL.key,
            "quiet_ms": self.quiet_ms() if self.trace else None,
            "band": BAND,
            "rejected_chunks": self.rejected,
            "waited_s": round(self.waited_s, 1),
            "trace": [list(point) for point in self.trace],
        }
