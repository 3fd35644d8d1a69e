"""Fake measurers standing for a machine's noise (no real timing): what the precision loop, the
sentinel watch and the machine check do with quiet, noisy and busy stretches is decided by these
scripts, so the tests can assert it exactly. The real paths (`LocalMeasurer`, `hwnas doctor` on
this host) are exercised by the CLI tests and `bench.round_statistic`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from hwnas.hardware.backends.base import Timing
from hwnas.hardware.doctor import SENTINEL


def timing(ms: float) -> Timing:
    return Timing(ms, ms, ms, ms, 0.0, 10)


class QuietSentinel:
    """For fake measurers of whole subnets: every block, the sentinel included, takes 0.2 ms."""

    where = "local"

    def blocks(self, sigs, protocol) -> Iterator:
        for sig in sigs:
            yield sig, timing(0.2)


class ScriptedMachine(QuietSentinel):
    """Block `sig`'s k-th measurement takes `block_ms(sig, k)`; the sentinel's n-th timing takes
    `sentinel_ms(n)` (default: always 0.2 ms, a quiet machine)."""

    def __init__(self, block_ms: Callable[[object, int], float], sentinel_ms: Callable[[int], float] = lambda n: 0.2):
        self.block_ms, self.sentinel_ms = block_ms, sentinel_ms
        self.counts: dict[str, int] = {}
        self.sentinels = 0

    def host(self) -> dict:
        return {"node": "fake"}

    def versions(self) -> dict:
        return {"runtime": "fake"}

    def overhead(self, protocol) -> Timing:
        return timing(0.001)

    def blocks(self, sigs, protocol) -> Iterator:
        for sig in sigs:
            if sig == SENTINEL:
                self.sentinels += 1
                yield sig, timing(self.sentinel_ms(self.sentinels - 1))
                continue
            k = self.counts.get(sig.key, 0)
            self.counts[sig.key] = k + 1
            yield sig, timing(self.block_ms(sig, k))
