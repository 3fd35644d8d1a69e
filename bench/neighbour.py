"""A noisy neighbour for the benchmarks (issue 48): a seeded process that keeps one core busy in
bursts of 0.2-3 s at 50% duty (each burst followed by an idle stretch as long), the load a shared
machine's other tenant puts on a measurement.

As a context manager (`with Neighbour(seed=0): ...`) it runs for the block's duration and stops
with it, as another tenant's process: started through `setsid -f`, so it is not a child of the
benchmark (the machine check counts a measuring process's own children as its own, and would not
see it); `python -m bench.neighbour --seconds 60` runs it alone.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path


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
        self.tag = f"hwnas-neighbour-{uuid.uuid4().hex}"

    def __enter__(self) -> Neighbour:
        command = [sys.executable, "-m", "bench.neighbour", "--seconds", str(self.seconds), "--seed", str(self.seed)]
        subprocess.run(["setsid", "-f", *command, "--tag", self.tag], check=True, cwd=Path(__file__).parents[1])
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["pkill", "-f", self.tag], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="a mark in the command line to stop it by (pkill -f)")
    args = parser.parse_args()
    _burn(args.seed, time.monotonic() + args.seconds)


if __name__ == "__main__":
    main()
