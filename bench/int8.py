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
  digits classification task; with the ONNX Runtime vs LiteRT int8 agreement. Core ML's W8A8
  package is scored as the torch graph it was converted from (Core ML runs on macOS only).
- `ranking`: random subnets of the saliency supernet scored at fp32, with int8 simulated in torch
  (`search --quantized-accuracy`) and as ONNX Runtime's int8 export; Kendall tau between them.

Usage: python -m bench.int8 [--part speed,converters,accuracy,ranking] [--samples 10] [--rounds 4]
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


TRAINED = {  # label -> (training flags, metrics reported)
    "mini saliency (make demo)": (
        ["--task", "saliency", "--data", "synthetic", "--epochs", "3", "--selfkd"],
        ["cc", "kld", "nss", "sauc"],
    ),
    "mini digits classification": (["--task", "classification", "--data", "digits", "--epochs", "3"], ["top1"]),
}


def _trained(root: Path, label: str) -> Path:
    """The supernet of `label`, trained once per run under `root`."""
    ckpt = root / (label.split(" ")[1] + ".pt")
    if not ckpt.exists():
        _cli("train", "supernet", "--space", "mini", *TRAINED[label][0], "--out", str(ckpt), cwd=root)
    return ckpt


def accuracy(root: Path) -> dict:
    """Export min and max of each trained supernet at int8 (onnx and tflite), read the manifests."""
    out = {}
    for label, (_, metrics) in TRAINED.items():
        ckpt = _trained(root, label)
        for arch in ("min", "max"):
            folder = root / f"{ckpt.stem}-{arch}"
            _cli("export", "--supernet", str(ckpt), "--arch", arch, "--format", "onnx,tflite,coreml", "--precision",
                 "int8", "--out", str(folder), "--rounds", "2", cwd=root)  # fmt: skip
            for fmt in ("onnx", "tflite", "coreml"):  # Core ML's scores: its torch graph's (no macOS here)
                manifest = json.loads((folder / f"mini-{arch}.{fmt}.json").read_text())
                acc = manifest["accuracy"]
                key = f"{label} / {arch} / {fmt}"
                out[key] = {
                    "fp32": {m: acc["fp32"][m] for m in metrics}, "int8": {m: acc["scores"][m] for m in metrics},
                    "drop": {m: acc["drops"][m] for m in metrics}, "images": acc["images"],
                    "agreement": manifest["agreement"].get("onnx~tflite"),
                    "latency_ms": (manifest["verification"].get("speed") or {}).get("measured_ms"),
                }  # fmt: skip
                scores = ", ".join(
                    f"{m} {acc['fp32'][m]:.4f} -> {acc['scores'][m]:.4f} (drop {acc['drops'][m]:+.4f})" for m in metrics
                )
                print(f"{key}: {scores}", flush=True)
    return out


def ranking(root: Path, samples: int) -> dict:
    """How int8 reorders subnets: `samples` random mini subnets of the saliency supernet scored at
    fp32, with int8 simulated in torch (what `search --quantized-accuracy` scores) and as ONNX
    Runtime's int8 export (calibrated on 64 training images); Kendall tau between each pair."""
    from scipy import stats

    import hwnas
    from hwnas.nn.quantize import SCHEMES
    from hwnas.search.accuracy import SupernetEvaluator

    label = "mini saliency (make demo)"
    ckpt = _trained(root, label)
    space = SearchSpace.load("mini")
    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(samples)))
    fp32 = SupernetEvaluator(ckpt, space)
    simulated = SupernetEvaluator(ckpt, space, quantization=SCHEMES["onnxruntime"])
    rows = []
    for i, arch in enumerate(archs):
        report = hwnas.export(ckpt, arch, formats="onnx", precision="int8", out=root / f"rank{i}", rounds=1)
        runtime = report.accuracy.scores["onnx"]["cc"]
        rows.append({"arch": str(arch), "fp32": fp32(arch), "simulated": simulated(arch), "onnxruntime": runtime,
                     "export_fp32": report.accuracy.reference["cc"]})  # fmt: skip
    table = {k: np.array([r[k] for r in rows]) for k in ("fp32", "simulated", "onnxruntime")}
    taus = {
        f"{a}~{b}": float(stats.kendalltau(table[a], table[b]).statistic)
        for a, b in (("fp32", "onnxruntime"), ("simulated", "onnxruntime"), ("fp32", "simulated"))
    }
    print(f"{label}, {len(rows)} subnets, CC: Kendall tau " + ", ".join(f"{k} {v:.3f}" for k, v in taus.items()))
    return {"metric": "cc", "subnets": len(rows), "tau": taus, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="speed,converters,accuracy,ranking")
    parser.add_argument("--samples", type=int, default=10, help="alphanet subnets for speed and converters")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ranked", type=int, default=24, help="mini subnets the ranking part scores")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    path = OUT / "int8.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.part.split(","):
            if part == "speed":
                report["speed"] = speed(args.samples, args.rounds)
            elif part == "converters":
                report["converters"] = converters(min(args.samples, 3))
            elif part == "accuracy":
                report["accuracy"] = accuracy(Path(tmp))
            elif part == "ranking":
                report["ranking"] = ranking(Path(tmp), args.ranked)
            else:
                raise SystemExit(f"unknown --part {part}; allowed: speed, converters, accuracy, ranking")
            save(path, report)


if __name__ == "__main__":
    main()
