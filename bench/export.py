"""Export parity and speed: alphanet min and max subnets, saliency head, 256x192 (issue targets).

Targets: ONNX (ONNX Runtime) and TFLite (LiteRT) outputs within 1e-4 of PyTorch (fp32), and the
exported ONNX on ONNX Runtime CPU at most 0.8x the latency of PyTorch eager with the same thread
count, as a ratio measured in one run (the two runtimes take turns, round after round).

There is no trained alphanet supernet here, so each subnet is a subnet checkpoint with seeded
random weights and random BN statistics (so no BN is an identity): numerical parity and speed do
not depend on what the weights learned. The export goes through `hwnas.export`, exactly as the CLI.
Usage: python -m bench.export [--archs min,max] [--rounds 5]. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import hwnas
from bench.common import machine, save
from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.backends.base import Artifact
from hwnas.hardware.device import load_device
from hwnas.nn.checkpoint import save_checkpoint
from hwnas.nn.factory import create
from hwnas.space import SearchSpace
from hwnas.train.source import load_source

OUT = Path(__file__).parent / "out"
RESOLUTION = (256, 192)


def subnet_checkpoint(space: SearchSpace, pick: str, path: Path) -> Path:
    """A subnet checkpoint of `pick` at 256x192 with seeded random weights and BN statistics."""
    base = space.min() if pick == "min" else space.max()
    arch = hwnas.Arch(RESOLUTION, base.stem, base.stages, base.last)
    torch.manual_seed(0)
    net = create(space, arch=arch, task="saliency")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    payload = {
        "kind": "subnet",
        "task": "saliency",
        "num_classes": 1,
        "space_toml": space.toml,
        "arch": space.arch_to_dict(arch),
        "model": net.state_dict(),
        "epoch": 0,
        "data": "synthetic",
    }
    return save_checkpoint(path, payload)


def eager_vs_ort(onnx_path: Path, subnet: torch.nn.Module, shape: tuple, rounds: int) -> tuple[float, float]:
    """Median over rounds of each runtime's median latency (ms), taking turns within each round."""
    ort, eager = get_backend(load_device("cpu")), get_backend(load_device("cpu-torch"))
    assert load_device("cpu").threads == load_device("cpu-torch").threads
    ort_artifact = Artifact(onnx_path.read_bytes(), (shape,))
    eager_artifact = eager.prepare(subnet, [shape])
    times = np.zeros((rounds, 2))
    for r in range(rounds):
        times[r, 0] = ort.load(ort_artifact).measure(Protocol()).median_ms
        times[r, 1] = eager.load(eager_artifact).measure(Protocol()).median_ms
    return tuple(np.median(times, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="min,max")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    space = SearchSpace.load("alphanet")
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}; cpu (ONNX Runtime) and cpu-torch (eager) both at 2 threads")
    print(f"{'arch':<5} {'onnx max abs':>12} {'tflite max abs':>14} {'ort ms':>8} {'eager ms':>9} {'ort/eager':>9}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pick in args.archs.split(","):
            ckpt = subnet_checkpoint(space, pick, Path(tmp) / f"{pick}.pt")
            report = hwnas.export(ckpt, None, formats="onnx,tflite", out=Path(tmp) / "export", name=pick, rounds=1)
            by_format = {item.format: item for item in report.items}
            for item in report.items:
                assert item.verification.numerics is not None, item.verification.reason
            subnet, _ = load_source(ckpt, None)
            shape = (1, 3, RESOLUTION[1], RESOLUTION[0])
            ort_ms, eager_ms = eager_vs_ort(by_format["onnx"].paths[0], subnet, shape, args.rounds)
            row = {
                "arch": pick,
                "line": str(report.source.arch),
                "onnx_max_abs": by_format["onnx"].verification.numerics.max_abs,
                "tflite_max_abs": by_format["tflite"].verification.numerics.max_abs,
                "onnx_passed": by_format["onnx"].verification.numerics.passed,
                "tflite_passed": by_format["tflite"].verification.numerics.passed,
                "ort_ms": ort_ms,
                "eager_ms": eager_ms,
                "ratio": ort_ms / eager_ms,
            }
            rows.append(row)
            print(
                f"{pick:<5} {row['onnx_max_abs']:>12.2e} {row['tflite_max_abs']:>14.2e} "
                f"{ort_ms:>8.2f} {eager_ms:>9.2f} {row['ratio']:>9.2f}"
            )
    print("targets: max abs <= 1e-4 for onnx and tflite; ort/eager <= 0.8")
    OUT.mkdir(exist_ok=True)
    save(OUT / "export.json", {"rows": rows})


if __name__ == "__main__":
    main()
