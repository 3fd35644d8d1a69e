"""`Measurer`: where a table's timings come from, this host (`LocalMeasurer`) or a device running
`hwnas agent` (`hwnas.hardware.agent.client.RemoteMeasurer`). `hwnas profile` and `hwnas lut validate` drive
either the same way: the overhead of one call, one round over a list of block signatures, and
whole subnets in interleaved rounds. Only signatures and archs cross the boundary, never modules.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Executor

import numpy as np
from torch import nn

from hwnas.hardware.backends import Backend, Protocol, Timing, get_backend
from hwnas.hardware.backends.base import POOL_MIN_JOBS, Artifact, conversion_pool
from hwnas.hardware.device import Device
from hwnas.nn.factory import create
from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs
from hwnas.space import Arch, SearchSpace
from hwnas.space.signature import BlockSignature

Progress = Callable[[int, int, str], None]
# What a row and a whole subnet predict with: the geometric mean of the round medians, whose 95%
# interval (`hwnas.hardware.precision`) held for 87-98% of rows between two builds of 4-8 rounds, the
# median's for 79-89% (bench.round_statistic, 8 December 2026, twice; docs/results/measured.md).
DEFAULT_STATISTIC = "geomean"
OVERHEAD_SHAPE = (8, 8, 8)
BLOCK_CHUNK = 32  # blocks converted between measurements (what an interruption can lose)
ARCH_CHUNK = 8  # whole subnets built and converted at a time


def no_progress(done: int, total: int, label: str) -> None:
    return None


def measure_rounds(
    backend: Backend,
    artifacts: list[Artifact],
    *,
    rounds: int,
    statistic: str = DEFAULT_STATISTIC,
    protocol: Protocol | None = None,
    progress: Progress = no_progress,
) -> np.ndarray:
    """(rounds, artifacts): each whole model's `statistic` (ms) in each of `rounds` interleaved
    rounds, with a fresh load per round."""
    protocol = protocol or Protocol()
    per_round = np.zeros((rounds, len(artifacts)))
    for r in range(rounds):
        for i, artifact in enumerate(artifacts):
            timing = backend.load(artifact).measure(protocol)
            per_round[r, i] = round_figure(timing, statistic)
            progress(r * len(artifacts) + i + 1, len(artifacts) * rounds, f"round {r + 1}/{rounds}")
    return per_round


def round_figure(timing: Timing, statistic: str) -> float:
    """What one round of one model gives a `statistic` to aggregate: its fastest call for `min`,
    else its median."""
    return timing.min_ms if statistic == "min" else timing.median_ms


def aggregate(per_round: np.ndarray, statistic: str) -> np.ndarray:
    """(rounds, models) -> one figure per model: the geometric mean of the rounds' medians, their
    median, or the minimum."""
    if statistic == "min":
        return per_round.min(axis=0)
    if statistic == "geomean":
        return np.exp(np.log(per_round).mean(axis=0))
    return np.median(per_round, axis=0)


class Measurer(ABC):
    """Times blocks and subnets for one device, here or on an agent."""

    where: str = "local"

    @abstractmethod
    def host(self) -> dict:
        """The measuring machine (node, OS, CPU, Python)."""

    @abstractmethod
    def versions(self) -> dict:
        """Versions of the runtime components that affect a measurement."""

    @abstractmethod
    def overhead(self, protocol: Protocol) -> Timing:
        """Per-call overhead: the time of a one-add model on a tiny tensor."""

    @abstractmethod
    def blocks(self, sigs: list[BlockSignature], protocol: Protocol) -> Iterator[tuple[BlockSignature, Timing]]:
        """One timing per signature, yielded as each is done (callers save as they go)."""

    @abstractmethod
    def archs(
        self,
        space: SearchSpace,
        archs: list[Arch],
        task: str,
        *,
        num_classes: int = 1000,
        rounds: int,
        statistic: str,
        protocol: Protocol,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        """(rounds, archs): end-to-end latency (ms) of each subnet (with the task's head of
        `num_classes` classes) in each interleaved round (`measure_rounds`); `aggregate` makes one
        figure per subnet of it."""


class LocalMeasurer(Measurer):
    """Measures on this host with the device's backend; converted blocks are kept between rounds.
    Blocks are converted `BLOCK_CHUNK` at a time and subnets all before their first round, each
    batch spread over `workers` processes where the backend converts slowly (`prepare_many`)."""

    def __init__(self, device: Device, *, workers: int | None = None):
        device.require_available()
        self.device = device
        self.backend = get_backend(device)
        self.workers = workers
        self._pool: Executor | None = None
        self._artifacts: dict[BlockSignature, Artifact] = {}

    def _prepare_many(self, jobs: list[tuple[nn.Module, list[tuple[int, ...]]]]) -> Iterator[Artifact]:
        if self._pool is None and self.backend.slow_prepare and len(jobs) >= POOL_MIN_JOBS:
            self._pool = conversion_pool(self.workers)
            if self._pool is not None:
                weakref.finalize(self, self._pool.shutdown)
        return self.backend.prepare_many(jobs, pool=self._pool)

    def host(self) -> dict:
        from hwnas.hardware.table import host_info

        return host_info()

    def versions(self) -> dict:
        return self.backend.versions()

    def overhead(self, protocol: Protocol) -> Timing:
        return self.backend.compile(IdentityModel(), [(self.device.batch, *OVERHEAD_SHAPE)]).measure(protocol)

    def blocks(self, sigs: list[BlockSignature], protocol: Protocol) -> Iterator[tuple[BlockSignature, Timing]]:
        for start in range(0, len(sigs), BLOCK_CHUNK):
            chunk = sigs[start : start + BLOCK_CHUNK]
            todo = [sig for sig in dict.fromkeys(chunk) if sig not in self._artifacts]
            jobs = [(SignatureModel(sig).eval(), signature_inputs(sig, self.device.batch)) for sig in todo]
            for sig, artifact in zip(todo, self._prepare_many(jobs), strict=True):
                self._artifacts[sig] = artifact
            for sig in chunk:
                yield sig, self.backend.load(self._artifacts[sig]).measure(protocol)

    def archs(
        self,
        space: SearchSpace,
        archs: list[Arch],
        task: str,
        *,
        num_classes: int = 1000,
        rounds: int,
        statistic: str,
        protocol: Protocol,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        artifacts: list[Artifact] = []
        for start in range(0, len(archs), ARCH_CHUNK):  # a chunk of full subnets in memory at a time
            jobs = [self._subnet_job(space, arch, task, num_classes) for arch in archs[start : start + ARCH_CHUNK]]
            for artifact in self._prepare_many(jobs):
                artifacts.append(artifact)
                progress(0, len(archs) * rounds, f"converted {len(artifacts)}/{len(archs)}")
        return measure_rounds(
            self.backend, artifacts, rounds=rounds, statistic=statistic, protocol=protocol, progress=progress
        )

    def _subnet_job(
        self, space: SearchSpace, arch: Arch, task: str, num_classes: int
    ) -> tuple[nn.Module, list[tuple[int, ...]]]:
        w, h = arch.resolution
        return create(space, arch=arch, task=task, num_classes=num_classes).eval(), [(self.device.batch, 3, h, w)]
