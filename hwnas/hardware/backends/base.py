"""The backend protocol and the one shared measurement function.

A `Backend` compiles a module for its runtime into a `Runnable`; `Runnable.measure(protocol)`
times it with `measure`, the single implementation of the measurement protocol
(../shared/BACKENDS.md): a fixed thread count, warm-up until the time per call is stable, timed
calls with `perf_counter_ns` (or device events), median / p90 / min / CV, and re-measurement of
noisy entries, which stay flagged if they remain noisy. The defaults are for one round: tables and
end-to-end checks measure each model in several interleaved rounds (`hwnas.hardware.profiling`). Nothing is
subtracted here; per-call overhead is measured separately (an identity model) and stored in the
table's metadata.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from hwnas.hardware.device import Device


@dataclass(frozen=True)
class Protocol:
    """How long and how often to time one model."""

    warmup_min_calls: int = 5
    warmup_min_s: float = 0.025
    warmup_max_s: float = 1.0
    window: int = 5
    stable_tol: float = 0.05
    runs: int = 15
    min_run_s: float = 0.025  # 0.05 until issue 33: the table's fidelity held at half (bench.profile_speed)
    cv_threshold: float = 0.10
    retries: int = 1
    robust_cv: bool = True  # judge noise by 1.4826 MAD / median, which one slow call among thousands leaves alone

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Statistics of the timed calls, in milliseconds; `noisy` if CV stayed above the threshold."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    cv: float
    n: int
    attempts: int = 1
    noisy: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _stats(samples_ns: Sequence[int]) -> tuple[float, float, float, float, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    mean = float(ms.mean())
    cv = float(ms.std(ddof=1) / mean) if len(ms) > 1 and mean > 0 else 0.0
    return float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.min()), mean, cv


def robust_cv(samples_ns: Sequence[int]) -> float:
    """1.4826 x the median absolute deviation over the median: the coefficient of variation of
    normally spread timings, but unmoved by the few calls an interrupt or a page fault slows
    (timings of microsecond blocks are heavy-tailed: their plain CV was 0.4 here with no load)."""
    ms = np.asarray(samples_ns, dtype=np.float64)
    median = float(np.median(ms))
    return float(1.4826 * np.median(np.abs(ms - median)) / median) if median > 0 else 0.0


def _default_timer(call: Callable[[], object]) -> Callable[[], int]:
    def timed() -> int:
        start = time.perf_counter_ns()
        call()
        return time.perf_counter_ns() - start

    return timed


def warm_up(timed: Callable[[], int], protocol: Protocol) -> int:
    """Call until two consecutive windows agree within `stable_tol` (and the minimums are met)."""
    samples: list[int] = []
    start = time.perf_counter()
    while True:
        samples.append(timed())
        elapsed = time.perf_counter() - start
        if elapsed >= protocol.warmup_max_s:
            break
        if len(samples) < max(protocol.warmup_min_calls, 2 * protocol.window) or elapsed < protocol.warmup_min_s:
            continue
        last = np.median(samples[-protocol.window :])
        prev = np.median(samples[-2 * protocol.window : -protocol.window])
        if abs(last - prev) <= protocol.stable_tol * prev:
            break
    return len(samples)


def measure(
    call: Callable[[], object], protocol: Protocol = Protocol(), timer: Callable[[], int] | None = None
) -> Timing:
    """Time `call` under `protocol`; `timer` (returns ns for one call) replaces wall-clock timing."""
    timed = timer or _default_timer(call)
    warm_up(timed, protocol)
    best: Timing | None = None
    best_spread = np.inf
    for attempt in range(1, protocol.retries + 2):
        samples = []
        start = time.perf_counter()
        while len(samples) < protocol.runs or time.perf_counter() - start < protocol.min_run_s:
            samples.append(timed())
        median, p90, low, mean, cv = _stats(samples)
        spread = robust_cv(samples) if protocol.robust_cv else cv
        timing = Timing(median, p90, low, mean, cv, len(samples), attempt, spread > protocol.cv_threshold)
        if spread < best_spread:
            best, best_spread = Timing(median, p90, low, mean, cv, len(samples), attempt, timing.noisy), spread
        if not timing.noisy:
            break
    return best


@dataclass(frozen=True)
class Quantized:
    """How an integer input or output of a quantized model stands for real values (the affine
    scheme of ONNX's QuantizeLinear and LiteRT's int8 tensors): real = (q - zero_point) * scale."""

    dtype: str  # "int8" or "uint8"
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(x, dtype=np.float32) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, dtype=np.float32) - self.zero_point) * self.scale).astype(np.float32)


def calibration_inputs(
    input_shapes: Sequence[tuple[int, ...]], count: int = 8, seed: int = 0
) -> list[list[np.ndarray]]:
    """`count` seeded standard-normal input sets: what a block is calibrated on for a latency table
    (its timing depends on the integer kernels, not on the scales the samples set)."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(np.float32) for s in input_shapes] for _ in range(count)]


class Runnable(ABC):
    """A compiled model on one runtime with fixed input shapes.

    A full-integer model has integer inputs or outputs (`input_quant`/`output_quant` say how they
    stand for real values, None where a tensor is float): `run` takes and returns real values,
    quantizing and dequantizing at the edges; `bind` times it on integer inputs as they would
    arrive from the block before."""

    def __init__(self, input_shapes: Sequence[tuple[int, ...]]):
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.input_quant: list[Quantized | None] = [None] * len(self.input_shapes)
        self.output_quant: list[Quantized | None] = []
        self.channels_last = False  # the model takes and returns NHWC (`hwnas.nn.static.ChannelsLastIO`)

    def native_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Real-valued NCHW `inputs` as the model takes them (quantized where its input is integer,
        channels-last where it takes that)."""
        out = []
        for x, q in zip(inputs, self.input_quant, strict=True):
            x = np.asarray(x, dtype=np.float32)
            x = x.transpose(0, 2, 3, 1) if self.channels_last and x.ndim == 4 else x
            out.append(np.ascontiguousarray(x) if q is None else np.ascontiguousarray(q.quantize(x)))
        return out

    def real_outputs(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs as real NCHW values (dequantized where an output is integer)."""
        quant = self.output_quant or [None] * len(outputs)
        real = [np.asarray(y) if q is None else q.dequantize(y) for y, q in zip(outputs, quant, strict=True)]
        return [y.transpose(0, 3, 1, 2) if self.channels_last and y.ndim == 4 else y for y in real]

    @abstractmethod
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Real-valued outputs for real-valued float32 `inputs` (numerics checks, scoring)."""

    @abstractmethod
    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A zero-argument call that runs the model once on `inputs` in its own input types (what
        `measure` times)."""

    def timer(self, call: Callable[[], object]) -> Callable[[], int] | None:
        """A device-specific timer for one call, or None for wall-clock timing."""
        return None

    def example_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Seeded standard-normal inputs in the model's own input types."""
        rng = np.random.default_rng(seed)
        return self.native_inputs([rng.standard_normal(s).astype(np.float32) for s in self.input_shapes])

    def measure(self, protocol: Protocol = Protocol(), inputs: Sequence[np.ndarray] | None = None) -> Timing:
        call = self.bind(self.example_inputs() if inputs is None else inputs)
        return measure(call, protocol, self.timer(call))


@dataclass(frozen=True)
class Artifact:
    """A model converted for one runtime (ONNX bytes, a flatbuffer, an mlprogram, an engine...)."""

    payload: Any
    input_shapes: tuple[tuple[int, ...], ...]  # NCHW, as the module was given
    channels_last: bool = False  # the model takes and returns NHWC (`hwnas.nn.static.ChannelsLastIO`)


class Backend(ABC):
    """A runtime adapter: `prepare` converts a module once, `load` makes a fresh `Runnable` of it.

    Tables measure each model in several rounds and load it anew for each, so that no idle
    sessions (and their thread pools) linger while another model is timed.
    """

    name: str = ""
    slow_prepare: bool = False  # conversion takes seconds a model: `prepare_many` may use worker processes

    def __init__(self, device: Device):
        self.device = device

    def prepare_many(
        self, jobs: Sequence[tuple[nn.Module, Sequence[tuple[int, ...]]]], *, pool: Executor | None = None
    ) -> Iterator[Artifact]:
        """`prepare` each (module, input shapes), yielded in order; in `pool`'s worker processes
        (`conversion_pool`) when given, the backend converts slowly (`slow_prepare`) and there are
        at least `POOL_MIN_JOBS`. The caller measures nothing meanwhile: no conversion overlaps a
        measurement."""
        if pool is None or not self.slow_prepare or len(jobs) < POOL_MIN_JOBS:
            for module, shapes in jobs:
                yield self.prepare(module, shapes)
            return
        modules, shapes = zip(*jobs, strict=True)
        yield from pool.map(_prepare, [self] * len(jobs), modules, shapes)

    @abstractmethod
    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        """Convert `module` (eval mode, float32) for this runtime with the device's options; at int8
        quantized as a latency table times it (`calibration_inputs`: enough for timing, not for
        accuracy; an export calibrates on images)."""

    @abstractmethod
    def load(self, artifact: Artifact) -> Runnable:
        """A runnable instance of a converted model."""

    def compile(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Runnable:
        return self.load(self.prepare(module, input_shapes))

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of every runtime component that affects a measurement."""


POOL_MIN_JOBS = 4


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _prepare(backend: Backend, module: nn.Module, shapes: Sequence[tuple[int, ...]]) -> Artifact:
    return backend.prepare(module, shapes)


def conversion_pool(workers: int | None = None) -> Executor | None:
    """Spawned processes with one torch thread each for `prepare_many` (None for fewer than two
    workers); by default one per core, at most 4, since each holds a whole model's graph. Each takes
    seconds to start (torch and the converter are imported anew), so keep one for a whole run; the
    calling script needs the usual `if __name__ == "__main__":` guard."""
    workers = max(1, min(4, os.cpu_count() or 1)) if workers is None else workers
    if workers < 2:
        return None
    context = multiprocessing.get_context("spawn")  # forking a process with torch's threads can hang
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread)


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Silence stdout/stderr at the file-descriptor level (converters that print from C++)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
