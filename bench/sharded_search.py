"""One evaluation-bound search with 1 and 2 processes under torchrun (issue 34): `hwnas search` on
`mini` (32 supernet evaluations, mosegnas) of a supernet whose validation split is large enough that
scoring candidates is most of the work, run as a user runs it, in one run:

- one process with one thread (what each torchrun process gets),
- one process with every core's thread (the default a user gets without torchrun),
- `torchrun --nproc-per-node 2 -m hwnas search ...` (one thread each),

with their wall times (starting Python and torch included), the speed-up against each one-process
run, and whether the archives are the same. Usage: python -m bench.sharded_search [--val-size 1024]
[--evals 32]. Writes bench/out/sharded_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, save

OUT = Path(__file__).parent / "out" / "sharded_search.json"
HWNAS = [sys.executable, "-m", "hwnas"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "hwnas"]


def timed(cmd: list[str], *, cwd: Path, threads: int | None) -> float:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - start


def records(folder: Path) -> list:
    return [(r["arch"], r["values"]) for r in json.loads((folder / "archive.json").read_text())["records"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-size", type=int, default=1024, help="validation images each candidate is scored on")
    parser.add_argument("--evals", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        lut = here / "cpu-mini.parquet"
        profile = ["profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--rounds", "2"]
        profile += ["--no-validate", "--out", str(lut)]
        subprocess.run([*HWNAS, *profile], cwd=here, check=True, capture_output=True)
        subprocess.run([*HWNAS, "train", "supernet", "--space", "mini", "--epochs", "1", "--batch-size", "16",
                        "--train-size", "512", "--val-size", str(args.val_size), "--out", "supernet.pt"], cwd=here,
                       check=True, capture_output=True)  # fmt: skip
        search = ["search", "--device", "cpu", "--space", "mini", "--lut", str(lut), "--supernet", "supernet.pt",
                  "--budget", "30ms", "--evals", str(args.evals)]  # fmt: skip
        runs = {
            "1 process, 1 thread": timed([*HWNAS, *search, "--out", "one-1"], cwd=here, threads=1),
            f"1 process, {os.cpu_count()} threads": timed([*HWNAS, *search, "--out", "one-n"], cwd=here, threads=None),
            "torchrun, 2 processes, 1 thread each": timed([*TORCHRUN, *search, "--out", "two"], cwd=here, threads=1),
        }
        same = records(here / "two") == records(here / "one-1")
    two = runs["torchrun, 2 processes, 1 thread each"]
    rows = [{"run": name, "seconds": seconds, "speedup_of_torchrun": seconds / two} for name, seconds in runs.items()]
    print(f"machine: {machine()}")
    print(f"mini, mosegnas, {args.evals} evaluations, {args.val_size} validation images at 32x32")
    print(f"the archives of 1 process (1 thread) and of torchrun are equal: {same}")
    print("| run | seconds | torchrun's speed-up against it |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['speedup_of_torchrun']:.2f}x |")
    save(OUT, {"rows": rows, "same_archive": same, "val_size": args.val_size, "evals": args.evals})


if __name__ == "__main__":
    main()
