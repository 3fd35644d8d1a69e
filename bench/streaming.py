"""Evaluation of a saliency set on disk read whole into memory against streamed from disk (issue 34).

Writes a synthetic saliency set at 384x288 in SALICON's layout (JPEG images, PNG maps, `.mat`
fixations; 256 training images and as many validation images as the largest count asked for, made
of 512 distinct scenes, each file written anew), then,
for each count of validation images and each way of reading, in a fresh process: loads the folder
(`load_data(..., stream=False)` reads every image now; the default streams them through DataLoader
workers) and scores the largest `mini` subnet (fresh weights, BN re-estimated on 2 batches) on the
validation split as search does (`evaluate(original=False)`, 64 images a batch). Prints and saves the
seconds to load and to evaluate, images per second over both, and the peak resident memory of the
process and of its worker processes (`getrusage`). Streaming's peak must not grow with the count.

Usage: python -m bench.streaming [--counts 1000 3000 10000] [--workers 2]. Writes
bench/out/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save

OUT = Path(__file__).parent / "out" / "streaming.json"
SIZE = (288, 384)  # (height, width) of every image on disk, SALICON's 480x640 scaled by 0.6
TRAIN = 256
SCENES = 512  # distinct scenes, each written under many names


def write_set(root: Path, val: int) -> None:
    """`TRAIN` training and `val` validation images in SALICON's layout: `SCENES` scenes of
    `hwnas.data.synthetic` (rendering is slow at this size) written under a new name each time."""
    from PIL import Image
    from scipy.io import savemat

    from hwnas.data.synthetic import synthetic_saliency

    scenes = synthetic_saliency(SCENES, size=SIZE, seed=0)
    for which, count, offset in (("train", TRAIN, 0), ("val", val, TRAIN)):
        for folder in ("images", "maps", "fixations"):
            (root / folder / which).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            i, name = (offset + k) % SCENES, f"COCO_{which}2014_{k:012d}"
            Image.fromarray(scenes.images[i].permute(1, 2, 0).numpy()).save(root / "images" / which / f"{name}.jpg")
            Image.fromarray(scenes.fields["map"][i, 0].numpy()).save(root / "maps" / which / f"{name}.png")
            yx = np.argwhere(scenes.fields["fix"][i, 0].numpy())
            gaze = np.zeros((1, 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
            xy = np.stack([yx[:, 1] + 1, yx[:, 0] + 1], 1).astype(np.float64)  # one-based x, y
            gaze[0, 0] = (xy, np.arange(len(xy), dtype=np.float64)[:, None], xy)
            savemat(root / "fixations" / which / f"{name}.mat", {"image": name, "gaze": gaze})


def keep_first(root: Path, count: int) -> Path:
    """A folder of links to the first `count` validation images of `root` (and every training one)."""
    view = root.parent / f"{root.name}-{count}"
    if view.exists():
        return view
    for folder in ("images", "maps", "fixations"):
        (view / folder).mkdir(parents=True)
        (view / folder / "train").symlink_to(root / folder / "train")
        (view / folder / "val").mkdir()
        for path in sorted((root / folder / "val").iterdir())[:count]:
            (view / folder / "val" / path.name).symlink_to(path)
    return view


def child(root: Path, stream: bool, workers: int) -> dict:
    """Load and evaluate in this process; the figures of one row."""
    from dataclasses import replace

    import torch

    from hwnas.data import load_data
    from hwnas.nn.factory import create
    from hwnas.space import SearchSpace
    from hwnas.train.evaluation import evaluate
    from hwnas.train.task import make_task

    torch.manual_seed(0)
    mini = SearchSpace.load("mini")
    start = time.perf_counter()
    data = load_data(str(root), task="saliency", size=SIZE, stream=stream)
    if stream:
        data.train, data.val = (replace(s, workers=workers) for s in (data.train, data.val))
    loaded = time.perf_counter()
    scores = evaluate(create(mini, task="saliency", seed=0), data, make_task("saliency"), arch=mini.max(),
                      bn_batches=2, batch_size=64, original=False)  # fmt: skip
    done = time.perf_counter()
    mine, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "images": len(data.val), "stream": stream, "load_s": loaded - start, "evaluate_s": done - loaded,
        "images_per_s": len(data.val) / (done - start), "peak_rss_mb": mine.ru_maxrss / 1024,
        "worker_peak_rss_mb": kids.ru_maxrss / 1024 if stream else None, "cc": scores["cc"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes when streaming")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "STREAM", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, stream, workers = args.child
        print(json.dumps(child(Path(root), stream == "1", int(workers))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "salicon"
        start = time.perf_counter()
        write_set(root, max(args.counts))
        print(
            f"wrote {max(args.counts)} validation images at {SIZE[1]}x{SIZE[0]} in {time.perf_counter() - start:.0f} s"
        )
        for count in args.counts:
            view = keep_first(root, count)
            for stream in (False, True):
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.streaming",
                    "--child",
                    str(view),
                    str(int(stream)),
                    str(args.workers),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{row['images']:>6} images {'streamed ' if stream else 'in memory'}  load {row['load_s']:6.1f} s  "
                    f"evaluate {row['evaluate_s']:6.1f} s  {row['images_per_s']:6.1f} img/s  "
                    f"peak RSS {row['peak_rss_mb']:7.0f} MB"
                    + (f" (+ workers {row['worker_peak_rss_mb']:.0f} MB each at most)" if stream else "")
                )
    save(OUT, {"machine": machine(), "size": f"{SIZE[1]}x{SIZE[0]}", "workers": args.workers, "rows": rows})


if __name__ == "__main__":
    main()
