"""Rerun every benchmark, then print one summary table of the figures the README quotes.

Usage: python -m bench.run_all [--only lut_fidelity,lut_calibration,lut_predict,search,selfkd,export,sod_ablation,
       segmentation_front,profile_speed,first_hour,sharded_search,streaming,int8]
       [--summary]
`--summary` prints the table from the results already in bench/out/ without rerunning anything.
The whole set takes about an hour and a half on this 2-core machine; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import machine

OUT = Path(__file__).parent / "out"
STEPS = {
    "lut_fidelity": ["--devices", "cpu", "--samples", "200"],
    "lut_calibration": [],
    "lut_predict": [],
    "search": [],
    "selfkd": [],
    "export": [],
    "sod_ablation": [],
    "segmentation_front": [],
    "profile_speed": [],
    "first_hour": [],
    "sharded_search": [],
    "streaming": [],
    "int8": [],
    "fewshot": [],
    "fewshot_profile": [],
    "timings": [],
}


def _load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, value, target) from bench/out/*.json; missing results say so."""
    out: list[tuple[str, str, str, str]] = []
    timing = _load("lut_fidelity.json")
    for device in ("cpu", "cpu-tflite"):
        validation = _load(f"{device}-validation.json")
        if not validation:
            continue
        after, n = validation["holdout_after"], validation["holdout_after"]["n"]
        out += [
            (
                "lut_fidelity",
                f"{device}: {n} held-out within 10% after calibration",
                f"{after['within_10']:.0%}",
                ">= 95%",
            ),
            ("lut_fidelity", f"{device}: held-out Kendall tau", f"{after['kendall_tau']:.3f}", ">= 0.9"),
            *(
                [("lut_fidelity", f"{device}: re-measured held-out tau (ceiling)", f"{rep['kendall_tau']:.3f}", "")]
                if (rep := validation.get("repeatability"))
                else []
            ),
            ("lut_fidelity", f"{device}: held-out MAPE", f"{after['mape']:.1f}%", ""),
        ]
    for row in (r for r in (timing or {}).get("rows", []) if r["profile_s"] is not None):
        out.append(("lut_fidelity", f"{row['device']}: full table", f"{row['profile_s'] / 60:.1f} min", "< 10 min"))
    calibration = _load("lut_calibration.json") or {}
    for name, by_res in calibration.get("rows", {}).items():
        cells = ", ".join(f"{k} {v['mape']:.1f}%" for k, v in by_res.items())
        out.append(("lut_calibration", f"held-out MAPE, {name}", cells, ""))
    predict = _load("lut_predict.json")
    if predict:
        out.append(("lut_predict", f"predict_many {predict['n']:,} archs", f"{predict['seconds']:.2f} s", "< 1 s"))
    search = _load("search.json") or {}
    if "alphanet" in search:
        a = search["alphanet"]
        out += [
            ("search", "alphanet NSGA-II 10k archs", f"{a['search_s']:.1f} s", "< 10 s"),
            ("search", "alphanet HV vs dense 100k", f"{a['hv_nsga2'] / a['hv_dense']:.1%}", ">= 99%"),
        ]
    for algo, runs in search.get("mini", {}).get("runs", {}).items():
        out.append(("search", f"mini median HV, {algo}", f"{np.median([r['hv'] for r in runs]):.4f}", ""))
    if "pnag" in search:
        c = search["pnag"]["rows"]
        gaps = [r["best_scored_cc"] - r["cc"] for r in c if r["best_scored_cc"] is not None]
        out += [
            ("search", f"pnag: {len(c)} budgets met", f"{np.mean([r['meets'] for r in c]):.0%}", ">= 95%"),
            ("search", "pnag: answer time (max)", f"{max(r['seconds'] for r in c):.3f} s", "< 1 s"),
            ("search", "pnag: CC gap to best scored (median)", f"{np.median(gaps):+.4f}", ""),
        ]
    for m in (_load("selfkd.json") or {}).get("summary", []):
        value = f"CC {m['cc_mean']:.4f}, {m['time_ratio']:.2f}x time"
        out.append(("selfkd", m["method"], value, "<= 1.1x" if m["method"] == "selfkd" else ""))
    for r in (_load("export.json") or {}).get("rows", []):
        value = f"onnx {r['onnx_max_abs']:.1e}, tflite {r['tflite_max_abs']:.1e}, ort/eager {r['ratio']:.2f}x"
        out.append(("export", f"alphanet {r['arch']} 256x192", value, "<= 1e-4, <= 0.8x"))
    for r in (_load("sod_ablation.json") or {}).get("summary", []):
        value = f"MAE {r['mae']:.4f}, wF {r['wfm']:.4f}, Sm {r['sm']:.4f}"
        out.append(("sod_ablation", r["row"], value, ""))
    segmentation = _load("segmentation_front.json") or {}
    by_algo: dict[str, list] = {}
    for r in segmentation.get("runs", []):
        by_algo.setdefault(r["algo"], []).append(r)
    for algo, runs in by_algo.items():
        value = (
            f"HV {np.median([r['hv'] for r in runs]):.4f}, chosen test mIoU "
            f"{np.median([r['chosen_test_miou'] for r in runs]):.4f}"
        )
        out.append(("segmentation_front", f"{algo} under {segmentation['budget']}", value, ""))
    for path in sorted(OUT.glob("profile_speed*.json")):  # one file per seed of the subnets measured
        speed = json.loads(path.read_text())
        seed = speed.get("seed", 0)
        for r in speed.get("rows", []):
            value = f"{r['seconds']:.0f} s, Kendall tau {r['kendall_tau']:.3f}"
            if "heldout_calibrated_mape" in r:
                value += f", held-out MAPE after calibration {r['heldout_calibrated_mape']:.1f}%"
            out.append(("profile_speed", f"mini on cpu, subnets of seed {seed}, {r['setting']} settings", value, ""))
        if "repeatability" in speed:
            tau = speed["repeatability"]["kendall_tau"]
            out.append(("profile_speed", f"seed {seed}: the measurement against itself", f"tau {tau:.3f}", ""))
    first = _load("first_hour.json") or {}
    for r in first.get("rows", []):
        value = f"{r['seconds']:.1f} s"
        if "hv_ratio" in r:
            value += f", HV {r['hv_ratio']:.4f}, regret p50 {r['regret_val_p50']:.2f}"
        target = first["targets"].get(r["what"])
        out.append(("first_hour", r["what"], value, "" if target is None else f"< {target:.0f} s"))
    sharded = _load("sharded_search.json") or {}
    for r in sharded.get("rows", []):
        speedup = f", torchrun {r['speedup_of_torchrun']:.2f}x faster" if r["speedup_of_torchrun"] != 1 else ""
        out.append(("sharded_search", r["run"], f"{r['seconds']:.1f} s{speedup}", ""))
    streaming = _load("streaming.json") or {}
    for r in streaming.get("rows", []):
        how = "streamed" if r["stream"] else "in memory"
        peak = f"peak RSS {r['peak_rss_mb']:.0f} MB"
        if r["stream"]:
            peak += f" (+ each worker {r['worker_peak_rss_mb']:.0f} MB)"
        value = f"{r['images_per_s']:.0f} img/s, {peak}"
        out.append(("streaming", f"evaluate {r['images']} images at {streaming['size']}, {how}", value, ""))
    int8 = _load("int8.json") or {}
    for runtime, r in int8.get("speed", {}).items():
        value = f"{r['speedup_median']:.2f}x (min {r['speedup_min']:.2f}, max {r['speedup_max']:.2f})"
        out.append(("int8", f"{runtime}: int8/fp32 speed-up, {r['subnets']} alphanet subnets 256x192", value, ""))
    for key, r in int8.get("accuracy", {}).items():
        drops = ", ".join(f"{m} {v:+.4f}" for m, v in r["drop"].items())
        out.append(("int8", f"drop: {key}", drops, ""))
    if "ranking" in int8:
        taus = ", ".join(f"{k} {v:.3f}" for k, v in int8["ranking"]["tau"].items())
        out.append(("int8", f"Kendall tau, {int8['ranking']['subnets']} mini subnets (CC)", taus, ""))
    for r in (_load("fewshot_10.json") or {}).get("rows", []):
        sources = "HELP's split" if r["sources"] == "help" else "all other devices"
        figure = f"{r['device']} from {sources}, {r['choice']} cells: Spearman rho, {r['samples']} samples"
        out.append(("fewshot", figure, f"{r['mean']:.3f} (lowest {r['lowest']:.3f})", f">= {r['help']} (HELP)"))
    for device, r in (_load("fewshot_profile.json") or {}).get("rows", {}).items():
        own = r["full"]["repeatability"]["kendall_tau"]
        for kind, seconds in (("full", r["profile_s"]), ("fewshot", r.get("fewshot", {}).get("device_s"))):
            if kind not in r:
                continue
            stored = r[kind]["held_out_as_stored"]
            value = f"{stored['within_10_text']} within 10%, tau {stored['kendall_tau']:.3f}, {seconds:.0f} s"
            label = "full table" if kind == "full" else f"{r['fewshot']['samples']}-shot table"
            out.append(("fewshot_profile", f"{device}: {label}, held out", value, f">= 99%, tau >= {own:.3f}"))
    for path in sorted(OUT.glob("timings-*.json")):  # one file a run: idle or beside the neighbour, and when
        run = json.loads(path.read_text())
        when = f"{run['date']} {path.stem.rsplit('-', 1)[-1]}, {'neighbour' if run['args']['neighbour'] else 'idle'}"
        for protocol, share in run["agreement"].items():
            builds = [b for b in run["builds"] if b["protocol"] == protocol]
            held = ", ".join(b["within_10_text"] for b in builds)
            seconds = ", ".join(f"{b['seconds']:.0f}" for b in builds)
            out.append(("timings", f"{when}: {protocol}, held out within 10% (builds A, B)", held, ">= 95%"))
            out.append(("timings", f"{when}: {protocol}, rows of two builds within 5%", f"{share:.0%}", ">= 95%"))
            out.append(("timings", f"{when}: {protocol}, profile s", seconds, "now <= 3x before"))
    for name in STEPS:
        if not any(r[0] == name for r in out):
            out.append((name, "not run yet", "-", ""))
    return out


def summary() -> None:
    table = rows()
    widths = [max(len(r[i]) for r in [("benchmark", "figure", "value", "target"), *table]) for i in range(4)]
    print(f"machine: {machine()}")
    for r in [("benchmark", "figure", "value", "target"), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated benchmarks to rerun")
    parser.add_argument("--summary", action="store_true", help="only print the table from bench/out/")
    args = parser.parse_args()
    if not args.summary:
        for name in args.only.split(","):
            if name not in STEPS:
                sys.exit(f"unknown benchmark '{name}'; allowed: {', '.join(STEPS)}")
            print(f"== bench.{name}", flush=True)
            subprocess.run([sys.executable, "-m", f"bench.{name}", *STEPS[name]], check=True)
    summary()


if __name__ == "__main__":
    main()
