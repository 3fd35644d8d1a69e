"""`Measurer`: where a table's timings come from, this host (`LocalMeasurer`) or a device running
`hwnas agent` (`hwnas.agent.RemoteMeasurer`). `hwnas profile` and `hwnas lut validate` drive
either the same way: the overhead of one call, one round over a list of block signatures, and
whole subnets in interleaved rounds. Only signatures and archs cross the boundary, never modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np

from hwnas.backends import Backend, Protocol, Timing, get_backend
from hwnas.backends.base import Artifact
from hwnas.devices import Device
from hwnas.nn.static import IdentityModel, SignatureModel, signature_inputs
from hwnas.nn.supernet import build_subnet
from hwnas.signature import BlockSignature
from hwnas.space import Arch, SearchSpace

Progress = Callable[[int, int, str], None]
DEFAULT_STATISTIC = "median"
OVERHEAD_SHAPE = (8, 8, 8)


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
            per_round[r, i] = getattr(timing, f"{statistic}_ms")
            progress(r * len(artifacts) + i + 1, len(artifacts) * rounds, f"round {r + 1}/{rounds}")
    return per_round


def aggregate(per_round: np.ndarray, statistic: str) -> np.ndarray:
    """(rounds, models) -> one figure per model: median of the rounds' medians, or the minimum."""
    return np.median(per_round, axis=0) if statistic == "median" else per_round.min(axis=0)


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
        rounds: int,
        statistic: str,
        protocol: Protocol,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        """(rounds, archs): end-to-end latency (ms) of each subnet in each interleaved round
        (`measure_rounds`); `aggregate` makes one figure per subnet of it."""


class LocalMeasurer(Measurer):
    """Measures on this host with the device's backend; converted blocks are kept between rounds."""

    def __init__(self, device: Device):
        device.require_available()
        self.device = device
        self.backend = get_backend(device)
        self._artifacts: dict[BlockSignature, Artifact] = {}

    def host(self) -> dict:
        from hwnas.lut import host_info

        return host_info()

    def versions(self) -> dict:
        return self.backend.versions()

    def overhead(self, protocol: Protocol) -> Timing:
        return self.backend.compile(IdentityModel(), [(self.device.batch, *OVERHEAD_SHAPE)]).measure(protocol)

    def blocks(self, sigs: list[BlockSignature], protocol: Protocol) -> Iterator[tuple[BlockSignature, Timing]]:
        for sig in sigs:
            if sig not in self._artifacts:
                inputs = signature_inputs(sig, self.device.batch)
                self._artifacts[sig] = self.backend.prepare(SignatureModel(sig).eval(), inputs)
            yield sig, self.backend.load(self._artifacts[sig]).measure(protocol)

    def archs(
        self,
        space: SearchSpace,
        archs: list[Arch],
        task: str,
        *,
        rounds: int,
        statistic: str,
        protocol: Protocol,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        artifacts = []
        for arch in archs:
            w, h = arch.resolution
            module = build_subnet(space, arch, task=task).eval()
            artifacts.append(self.backend.prepare(module, [(self.device.batch, 3, h, w)]))
            progress(0, len(archs) * rounds, f"converted {len(artifacts)}/{len(archs)}")
        return measure_rounds(
            self.backend, artifacts, rounds=rounds, statistic=statistic, protocol=protocol, progress=progress
        )
