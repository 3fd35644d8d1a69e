"""Int8 on the runtimes that run here (issue 35): what quantization buys and costs.

Three parts, each printed as a table and saved to bench/out/int8.json:

- `speed`: the same alphanet subnets at 256x192 (`validation_archs`, seed 0: the min, the max and
  random ones) built at fp32 and at int8 for ONNX Runtime's CPU provider and LiteRT (XNNPACK), each
  whole model timed in interleaved rounds in one run; the int8/fp32 speed-up per subnet.
- `converters`: LiteRT's two int8 routes on the same subnets, litert-torch's PT2E quantizer and
  ai-edge-quantizer's static recipe on the float flatbuffer: seconds to convert, fidelity to the
  fp32 torch model on seeded inputs (largest difference over the output's range, correlation), and
  speed (why `hwnas.hardware.backends.tflite` uses ai-edge-quantizer).
- `accuracy`: `hwnas export --precision int8` of trained subnets, scored by the task's metric on the
  validation split beside fp32: `mini` trained as `make demo` trains it (saliency), and `mini` on the
  digits classification task; with the ONNX Runtime vs LiteRT int8 agreement.

Usage: python -m bench.int8 [--part speed,converters,accuracy] [--samples 10] [--rounds 4]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import machine, save
from hwnas.hardware.backends import Protocol, get_backend
from hwnas.hardware.backends.base import calibration_inputs, quiet_fds
from hwnas.hardware.backends.tflite import TfliteRunnable, quantize_tflite, to_tflite
from hwnas.hardware.device import load_device
from hwnas.hardware.measurer import aggregate, measure_rounds
from hwnas.hardware.validation import validation_archs
from hwnas.nn.blocks import folded
from hwnas.nn.factory import create
from hwnas.space import SearchSpace

OUT = Path(__file__).parent / "out"
RESOLUTION = (256, 192)
HWNAS = [sys.executable, "-m", "hwnas"]


def _subnets(samples: int) -> list:
    space = SearchSpace.load("alphanet")
    return [(a, create(space, arch=a, seed=0).eval()) for a in validation_archs(space, samples, 0, [RESOLUTION])]


def speed(samples: int, rounds: int) -> dict:
    """fp32 against int8, the same subnets, per runtime; each runtime's four figures in one run."""
    subnets = _subnets(samples)
    shapes = [(1, 3, RESOLUTION[1], RESOLUTION[0])]
    out = {}
    for fp32, int8 in (("cpu", "cpu-int8"), ("cpu-tflite", "cpu-tflite-int8")):
        backends = [get_backend(load_device(n)) for n in (fp32, int8)]
        start = time.perf_counter()
        artifacts = [[b.prepare(net, shapes) for _, net in subnets] for b in backends]
        convert_s = time.perf_counter() - start
        ms = []
        for _ in range(rounds):  # alternate the precisions round by round
            pairs = zip(backends, artifacts, strict=True)
            ms.append([aggregate(measure_rounds(b, a, rounds=1), "median") for b, a in pairs])
        per = np.median(np.asarray(ms), axis=0)  # (2, subnets)
        ratio = per[0] / per[1]
        out[fp32] = {
            "fp32_ms": per[0].tolist(), "int8_ms": per[1].tolist(), "speedup": ratio.tolist(),
            "speedup_median": float(np.median(ratio)), "speedup_min": float(ratio.min()),
            "speedup_max": float(ratio.max()), "convert_s": convert_s, "subnets": len(subnets), "rounds": rounds,
        }  # fmt: skip
        print(
            f"{fp32:>10} -> {int8:<16} {len(subnets)} subnets: fp32 median {np.median(per[0]):.1f} ms, int8 "
            f"{np.median(per[1]):.1f} ms; speed-up median {np.median(ratio):.2f}x (min {ratio.min():.2f}, "
            f"max {ratio.max():.2f})",
            flush=True,
        )
    return out


def _fidelity(runnable, net, shape, count: int = 4) -> dict:
    rng = np.random.default_rng(1)
    worst, corr = 0.0, []
    for _ in range(count):
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            f = net(torch.from_numpy(x)).numpy()
        q = runnable.run([x])[0].reshape(f.shape)
        worst = max(worst, float(np.abs(q - f).max() / (f.max() - f.min())))
        corr.append(float(np.corrcoef(q.ravel(), f.ravel())[0, 1]))
    return {"max_abs_of_range": worst, "pearson": float(np.mean(corr))}


def _pt2e(net, shape) -> bytes:
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(config)
    example = (torch.zeros(shape),)
    with quiet_fds(), tempfile.TemporaryDirectory() as tmp:
        model = quantize_pt2e.prepare_pt2e(torch.export.export(folded(net), example).module(), quantizer)
        for (x,) in calibration_inputs([shape]):
            model(torch.from_numpy(x))
        model = quantize_pt2e.convert_pt2e(model, fold_quantize=False)
        edge = litert_torch.convert(model, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(f"{tmp}/m.tflite")
        return Path(f"{tmp}/m.tflite").read_bytes()


def converters(samples: int) -> dict:
    """PT2E against ai-edge-quantizer on the same subnets (both with the same 8 calibration inputs)."""
    shape = (1, 3, RESOLUTION[1], RESOLUTION[0])
    rows = []
    protocol = Protocol()
    for arch, net in _subnets(samples):
        row = {"arch": str(arch)}
        start = time.perf_counter()
        flat = to_tflite(net, [shape])
        row["float_s"] = time.perf_counter() - start
        start = time.perf_counter()
        aeq = quantize_tflite(flat, calibration_inputs([shape]))
        row["aeq_s"] = time.perf_counter() - start  # on top of the float conversion
        start = time.perf_counter()
        pt2e = _pt2e(net, shape)
        row["pt2e_s"] = time.perf_counter() - start  # export, prepare, calibrate, convert
        for name, model in (("aeq", aeq), ("pt2e", pt2e)):
            runnable = TfliteRunnable(model, [shape], 2)
            row[name] = {**_fidelity(runnable, net, shape), "ms": runnable.measure(protocol).median_ms}
        rows.append(row)
        print(
            f"{row['arch'][:40]:<40} float {row['float_s']:.1f} s; ai-edge-quantizer +{row['aeq_s']:.1f} s, "
            f"{row['aeq']['ms']:.1f} ms, max diff {row['aeq']['max_abs_of_range']:.3f} of range; PT2E "
            f"{row['pt2e_s']:.1f} s, {row['pt2e']['ms']:.1f} ms, {row['pt2e']['max_abs_of_range']:.3f}",
            flush=True,
        )
    return {"rows": rows}


def _cli(*args: str, cwd: Path) -> None:
    subprocess.run([*HWNAS, *args], cwd=cwd, check=True, capture_output=True, text=True)


def accuracy() -> dict:
    """Train (as `make demo`; digits for classification), export min and max at int8, read the manifests."""
    out = {}
    runs = {
        "mini saliency (make demo)": (
            ["--task", "saliency", "--data", "synthetic", "--epochs", "3", "--selfkd"],
            ["cc", "kld", "nss", "sauc"],
        ),
        "mini digits classification": (["--task", "classification", "--data", "digits", "--epochs", "3"], ["top1"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, (train, metrics) in runs.items():
            start = time.perf_counter()
            _cli("train", "supernet", "--space", "mini", *train, "--out", "sn.pt", cwd=root)
            train_s = time.perf_counter() - start
            for arch in ("min", "max"):
                folder = root / f"{label[:8]}-{arch}".replace(" ", "-")
                _cli("export", "--supernet", "sn.pt", "--arch", arch, "--format", "onnx,tflite", "--precision", "int8",
                     "--out", str(folder), "--rounds", "2", cwd=root)  # fmt: skip
                for fmt in ("onnx", "tflite"):
                    manifest = json.loads((folder / f"mini-{arch}.{fmt}.json").read_text())
                    acc = manifest["accuracy"]
                    key = f"{label} / {arch} / {fmt}"
                    out[key] = {
                        "fp32": {m: acc["fp32"][m] for m in metrics}, "int8": {m: acc["scores"][m] for m in metrics},
                        "drop": {m: acc["drops"][m] for m in metrics}, "images": acc["images"],
                        "agreement": manifest["agreement"].get("onnx~tflite"),
                        "latency_ms": (manifest["verification"].get("speed") or {}).get("measured_ms"),
                        "train_s": train_s,
                    }  # fmt: skip
                    scores = ", ".join(
                        f"{m} {acc['fp32'][m]:.4f} -> {acc['scores'][m]:.4f} (drop {acc['drops'][m]:+.4f})"
                        for m in metrics
                    )
                    print(f"{key}: {scores}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="speed,converters,accuracy")
    parser.add_argument("--samples", type=int, default=10, help="alphanet subnets for speed and converters")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    path = OUT / "int8.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    for part in args.part.split(","):
        if part == "speed":
            report["speed"] = speed(args.samples, args.rounds)
        elif part == "converters":
            report["converters"] = converters(min(args.samples, 3))
        elif part == "accuracy":
            report["accuracy"] = accuracy()
        else:
            raise SystemExit(f"unknown --part {part}; allowed: speed, converters, accuracy")
        save(path, report)


if __name__ == "__main__":
    main()
