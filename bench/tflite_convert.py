"""What makes litert-torch conversion of whole alphanet subnets faster (issue 22: it dominated the
LiteRT table's validation, 40-60 s a subnet).

For `--subnets` random alphanet subnets at 256x192 (seeded weights and BN statistics), each attempt
converts all of them and reports seconds per subnet and the largest output difference from PyTorch:

- plain: `litert_torch.convert` of the subnet as extracted (what hwnas did before);
- folded: BatchNorm folded into the convs first (`hwnas.hardware.backends.tflite.to_tflite` now);
- lightweight: folded, with litert-torch's `lightweight_conversion=True`;
- pool: folded, the subnets spread over worker processes (`Backend.prepare_many` with
  `conversion_pool`, one per core), seconds per subnet of wall time, worker start included.

litert-torch's `use_v2=True` needs a TensorFlow build that provides `convert_mlir_bytecode`, which
this project does not install: it raises before converting, so it is not an attempt here.
Usage: python -m bench.tflite_convert [--subnets 4] [--attempts plain,folded,lightweight,pool]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import machine
from hwnas.hardware.backends.base import quiet_fds
from hwnas.hardware.backends.tflite import TfliteBackend, TfliteRunnable, to_tflite
from hwnas.hardware.device import load_device
from hwnas.hardware.measurer import ARCH_CHUNK
from hwnas.nn.blocks import folded
from hwnas.nn.factory import create
from hwnas.space import SearchSpace

SHAPE = (1, 3, 192, 256)


def subnets(count: int) -> list[torch.nn.Module]:
    space = SearchSpace.load("alphanet")
    rng = np.random.default_rng(0)
    models = []
    for i in range(count):
        torch.manual_seed(i)
        model = create(space, arch=replace(space.sample(rng), resolution=(256, 192))).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        models.append(model)
    return models


def litert(model: torch.nn.Module, **options) -> bytes:
    with quiet_fds(), tempfile.TemporaryDirectory() as tmp:
        import litert_torch

        path = Path(tmp) / "m.tflite"
        litert_torch.convert(model, (torch.zeros(SHAPE),), **options).export(str(path))
        return path.read_bytes()


def error(model: torch.nn.Module, flatbuffer: bytes) -> float:
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return float(np.abs(TfliteRunnable(flatbuffer, [SHAPE], 2).run([x])[0] - reference).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subnets", type=int, default=4)
    parser.add_argument("--attempts", default="plain,folded,lightweight,pool")
    args = parser.parse_args()
    models = subnets(args.subnets)
    print(f"machine: {machine()}; {args.subnets} alphanet subnets at 256x192")
    print(f"{'attempt':<12} {'s / subnet':>10} {'max abs error':>14}")
    for attempt in args.attempts.split(","):
        start = time.perf_counter()
        if attempt == "pool":
            from hwnas.hardware.backends.base import conversion_pool

            pool = conversion_pool()
            backend = TfliteBackend(load_device("cpu-tflite"))
            jobs = [(m, [SHAPE]) for m in models]
            flatbuffers = []
            for chunk in range(0, len(jobs), ARCH_CHUNK):
                flatbuffers += [a.payload for a in backend.prepare_many(jobs[chunk : chunk + ARCH_CHUNK], pool=pool)]
            pool.shutdown()
        elif attempt == "plain":
            flatbuffers = [litert(m) for m in models]
        elif attempt == "folded":
            flatbuffers = [to_tflite(m, [SHAPE]) for m in models]
        elif attempt == "lightweight":
            flatbuffers = [litert(folded(m), lightweight_conversion=True) for m in models]
        else:
            raise SystemExit(f"unknown attempt {attempt}")
        seconds = (time.perf_counter() - start) / len(models)
        worst = max(error(m, f) for m, f in zip(models, flatbuffers, strict=True))
        print(f"{attempt:<12} {seconds:>10.1f} {worst:>14.1e}", flush=True)


if __name__ == "__main__":
    main()
