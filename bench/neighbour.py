"""A noisy neighbour for the benchmarks (issue 48): a seeded process that keeps one core busy in
bursts of 0.2-3 s at 50% duty (each burst followed by an idle stretch as long), the load a shared
machine's other tenant puts on a measurement.

As a context manager (`with Neighbour(seed=0): ...`) it runs in a child process for the block's
duration and stops with it; `python -m bench.neighbour --seconds 60` runs it alone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time


def _burn(seed: int, stop_at: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        burst = rng.uniform(0.2, 3.0)
        end = min(time.monotonic() + burst, stop_at)
        x = 0
        while time.monotonic() < end:
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF  # integer work: one core, no memory traffic to speak of
        time.sleep(max(0.0, min(burst, stop_at - time.monotonic())))


class Neighbour:
    """One core busy in seeded bursts (0.2-3 s, 50% duty) while the `with` block runs."""

    def __init__(self, *, seed: int = 0, seconds: float = 24 * 3600):
        self.seed, self.seconds = seed, seconds
        self._process: multiprocessing.Process | None = None

    def __enter__(self) -> Neighbour:
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=_burn, args=(self.seed, time.monotonic() + self.seconds), daemon=True)
        self._process.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _burn(args.seed, time.monotonic() + args.seconds)


if __name__ == "__main__":
    main()
