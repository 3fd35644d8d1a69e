"""Dataset formats as downloaded (`hwnas.data.layout`), `hwnas data check`, `hwnas evaluate` and the
scores at each image's original size. Every dataset here is written by `tests/formats.py` in the
exact format of its release."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from hwnas.data import DataError, load_data
from hwnas.data.layout import detect, find_all
from hwnas.data.metrics.names import SALIENCY_METRICS
from hwnas.data.metrics.saliency import score_saliency
from hwnas.data.saliency import read_saliency
from hwnas.data.sod import read_sod
from tests import formats
from tests.cli import one_error_line, run_cli

SALIENCY = {  # enough images that the drawn validation splits hold two (sAUC needs other images)
    "SALICON": lambda root: formats.write_salicon(root)["train"],
    "MIT1003": lambda root: formats.write_mit1003(root, n=15),
    "CAT2000": lambda root: formats.write_cat2000(root, per=8),
    "OSIE": lambda root: formats.write_osie(root, n=15),
}
SOD = {
    "DUTS": lambda root: formats.write_duts(root)["test"],
    "ECSSD": formats.write_ecssd,
    "HKU-IS": formats.write_hkuis,
    "PASCAL-S": formats.write_pascals,
    "DUT-OMRON": formats.write_dutomron,
}


def _rows(points: np.ndarray) -> list[tuple[int, int]]:
    return sorted(map(tuple, np.asarray(points).tolist()))


@pytest.mark.parametrize("name", list(SALIENCY))
def test_saliency_formats_read_fixations_as_written(tmp_path, name):
    written = SALIENCY[name](tmp_path)
    layout = detect(tmp_path)
    assert layout.format == name and layout.task == "saliency" and {"train", "val"} <= layout.labelled
    both = read_saliency(layout, "train", (24, 32)) + read_saliency(layout, "val", (24, 32))
    assert both.images.shape[1:] == (3, 24, 32) and both.fields["fix"].shape[1:] == (1, 24, 32)
    for truth in both.truths:
        if truth.name in written:  # SALICON: the val split has its own names
            assert _rows(truth.points) == _rows(written[truth.name])  # repeats kept, one-based made zero-based
            assert truth.size == formats.SIZES[0] or truth.size in formats.SIZES
            assert truth.array().shape == truth.size
    assert {t.size for t in both.truths} == set(formats.SIZES)  # originals, not the 24x32 they were resized to


@pytest.mark.parametrize("name", list(SOD))
def test_sod_formats_read_masks_as_written(tmp_path, name):
    written = SOD[name](tmp_path)
    layout = detect(tmp_path)
    assert layout.format == name and layout.task == "sod" and "test" in layout.labelled
    test = read_sod(layout, "test", (24, 32))
    assert set(test.fields["mask"].unique().tolist()) <= {0, 255}
    for truth in test.truths:
        np.testing.assert_array_equal(truth.array(), written[truth.name])  # PASCAL-S: graded, thresholded at 128


def test_a_folder_of_datasets_is_a_collection(tmp_path):
    for name, write in SOD.items():
        write(tmp_path / name)
    assert [lay.format for lay in find_all(tmp_path)] == sorted(SOD, key=lambda n: n)  # sorted by folder name
    with pytest.raises(DataError, match="ECSSD dataset .* has no labelled train split; train on DUTS-TR"):
        load_data(str(tmp_path / "ECSSD"), task="sod", size=(24, 32))
    with pytest.raises(DataError, match="is a DUTS dataset, for the sod task, not saliency"):
        load_data(str(tmp_path / "DUTS"), task="saliency", size=(24, 32))


# ---- hwnas data check ------------------------------------------------------------------------
@pytest.mark.slow
def test_data_check_reports_every_format(tmp_path):
    for name, write in {**SALIENCY, **SOD}.items():
        write(tmp_path / name)
    report = tmp_path / "check.json"
    shown = run_cli("data", "check", str(tmp_path), "--json", str(report)).stdout
    for name in (*SALIENCY, *SOD):
        assert f"{tmp_path / name}: {name}" in shown
    assert "PASCAL-S" in shown and "thresholded at 128" in shown and "OSIE ships no maps" in shown
    found = {r["format"]: r for r in json.loads(report.read_text())}
    salicon = {s["name"]: s for s in found["SALICON"]["splits"]}
    assert (salicon["train"]["images"], salicon["test"]["images"], salicon["test"]["labelled"]) == (3, 2, False)
    assert salicon["train"]["fixations_per_image"] == pytest.approx(27.0)  # 24 + 3 fixated twice
    assert {(s["height"], s["width"]) for s in salicon["train"]["sizes"]} == set(formats.SIZES)
    assert {s["name"]: s["images"] for s in found["CAT2000"]["splits"]} == {"train": 14, "val": 2, "test": 2}
    assert found["ECSSD"]["splits"][0]["object_fraction"] > 0


def _salicon_variant(tmp_path, kind: str):
    root = tmp_path / kind
    if kind == "empty":
        root.mkdir()
        return root
    formats.write_salicon(root)
    first = "COCO_val2014_000000000000"
    if kind == "missing-split":
        for sub in ("images", "maps", "fixations"):
            for f in (root / sub / "val").iterdir():
                f.unlink()
            (root / sub / "val").rmdir()
    elif kind == "map-size":
        Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(root / "maps" / "val" / f"{first}.png")
    elif kind == "mat-without-fixations":
        savemat(root / "fixations" / "val" / f"{first}.mat", {"image": first, "resolution": np.array([[30, 40]])})
    elif kind == "mat-empty-fixations":
        formats.salicon_mat(root / "fixations" / "val" / f"{first}.mat", np.zeros((0, 2), dtype=np.int64), (30, 40))
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing-split", "SALICON dataset .*: missing split images/val"),
        ("map-size", "is 40x30 but its map COCO_val2014_000000000000.png is 10x10; a map must have its image's size"),
        ("mat-without-fixations", "have no 'gaze' struct"),
        ("mat-empty-fixations", "COCO_val2014_000000000000.mat has no fixations inside"),
        ("empty", "no dataset format found in .*empty .it holds: nothing.; known formats: SALICON"),
    ],
)
def test_malformed_datasets_get_one_line(tmp_path, kind, message):
    import re

    root = _salicon_variant(tmp_path, kind)
    line = one_error_line(run_cli("data", "check", str(root), check=False))
    assert re.search(message, line), line


# ---- hwnas evaluate --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sod_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("sod") / "sod.pt"
    run_cli(
        "train", "supernet", "--space", "mini", "--task", "sod", "--epochs", "1", "--batch-size", "8",
        "--train-size", "32", "--val-size", "16", "--max-steps", "2", "--out", str(out),
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_evaluate_prints_every_saliency_metric_per_dataset(tmp_path, mini_run):
    for name, write in SALIENCY.items():
        write(tmp_path / name)
    scores = tmp_path / "scores.json"
    args = ["evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "min", "--data", str(tmp_path)]
    shown = run_cli(*args, "--json", str(scores)).stdout
    for label in ("AUC-J", "AUC-B", "sAUC", "CC", "KLD", "NSS", "SIM", "IG"):
        assert label in shown
    assert "scored at original size" in shown
    result = json.loads(scores.read_text())
    assert [r["dataset"] for r in result["rows"]] == ["CAT2000", "MIT1003", "OSIE", "SALICON"]
    assert all(v is not None and np.isfinite(v) for r in result["rows"] for v in r["scores"].values())
    for row in result["rows"]:  # each dataset's subnet recalibrated on its own training images
        assert row["bn"].startswith("recalibrated on ") and f"training images of '{row['dataset']}'" in row["bn"]
    assert result["rows"][0]["bn"] == "recalibrated on 14 training images of 'CAT2000' (at most 8 batches of 64)"


@pytest.mark.slow
def test_evaluate_on_the_synthetic_set_prints_the_full_table(tmp_path, mini_run):
    """No --data: the built-in set the supernet trained on, rebuilt; every saliency metric printed."""
    scores = tmp_path / "synthetic.json"
    shown = run_cli("evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "min", "--json", str(scores)).stdout
    header = next(line for line in shown.splitlines() if "AUC-J" in line)
    for label in ("dataset", "images", "AUC-J ↑", "AUC-B ↑", "sAUC ↑", "CC ↑", "KLD ↓", "NSS ↑", "SIM ↑", "IG ↑"):
        assert label in header
    row = json.loads(scores.read_text())["rows"][0]
    assert (row["dataset"], row["split"], row["images"]) == ("synthetic", "val", 32)
    assert set(row["scores"]) == set(SALIENCY_METRICS)
    test = run_cli("evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "max", "--split", "test").stdout
    assert "synthetic" in test and "test" in test


@pytest.mark.slow
def test_evaluate_scores_each_sod_test_set(tmp_path, sod_ckpt):
    for name, write in SOD.items():
        write(tmp_path / name)
    scores = tmp_path / "scores.json"
    args = ["evaluate", "--supernet", str(sod_ckpt), "--arch", "min", "--data", str(tmp_path), "--split", "test"]
    shown = run_cli(*args, "--json", str(scores)).stdout
    for label in ("MAE", "wF", "S-m", "E-m", "maxF"):
        assert label in shown
    rows = json.loads(scores.read_text())["rows"]
    assert sorted(r["dataset"] for r in rows) == sorted(SOD) and all(r["images"] == 3 for r in rows)
    line = one_error_line(run_cli("evaluate", "--supernet", str(sod_ckpt), "--arch", "min", "--data",
                                  str(tmp_path / "ECSSD"), "--split", "test", check=False))  # fmt: skip
    assert "no training images to re-estimate the subnet's BN statistics; pass a folder with a train split" in line
    ok = run_cli("evaluate", "--supernet", str(sod_ckpt), "--arch", "min", "--data", str(tmp_path / "ECSSD"),
                 "--split", "test", "--bn-data", str(tmp_path / "DUTS"))  # fmt: skip
    assert "ECSSD" in ok.stdout


@pytest.mark.slow
def test_evaluate_bad_flags_get_one_line(tmp_path, mini_run):
    formats.write_salicon(tmp_path / "s")
    base = ["evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "min", "--data", str(tmp_path / "s")]
    for extra, message in (
        (["--split", "train"], "--split must be one of val, test, not 'train'"),
        (["--sauc", "borji"], "--sauc must be one of all, mit, not 'borji'"),
        (["--arch", "nonsense.json"], "nonsense.json"),
    ):
        assert message in one_error_line(run_cli(*base, *extra, check=False))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    line = one_error_line(run_cli(*base, "--split", "test", "--submission", str(tmp_path / "full"), check=False))
    assert "exists and is not empty" in line


@pytest.mark.slow
def test_salicon_submission_has_a_png_per_test_image_at_its_size(tmp_path, mini_run):
    formats.write_salicon(tmp_path / "s", test=3)
    out = tmp_path / "submission"
    shown = run_cli("evaluate", "--supernet", str(mini_run["ckpt"]), "--arch", "min", "--data", str(tmp_path / "s"),
                    "--split", "test", "--submission", str(out)).stdout  # fmt: skip
    assert "wrote 3 maps" in shown and "has no ground truth: nothing to score" in shown
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"COCO_test2014_{i:012d}.png" for i in range(3)]
    for i, path in enumerate(written):
        with Image.open(path) as img:
            assert img.mode == "L" and (img.height, img.width) == formats.SIZES[i % 3]
            assert np.array(img).max() == 255  # min-max scaled


# ---- scores at the original size -------------------------------------------------------------
def test_original_size_scores_are_the_benchmarks_and_differ_from_input_size(tmp_path):
    """At each image's own size, on its own fixations: the prediction resized there first. The same
    predictions scored at their 32x32 input resolution (fixations re-binned, repeats merged, maps
    resized) give other values."""
    from scipy.ndimage import gaussian_filter

    from hwnas.train.evaluation import score
    from hwnas.train.task import SaliencyTask

    formats.write_salicon(tmp_path / "s")
    data = load_data(str(tmp_path / "s"), task="saliency", size=(32, 32))
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(np.stack([gaussian_filter(rng.random((32, 32)), 3) for _ in range(3)])[:, None]).float()
    task = SaliencyTask()
    at_original = score(task, data, pred, "val", resolution=(32, 32), original=True)
    at_input = score(task, data, pred, "val", resolution=(32, 32), original=False)
    for m in set(SALIENCY_METRICS) - {"auc_borji"}:  # AUC-Borji: its random negatives dominate
        assert abs(at_original[m] - at_input[m]) > 1e-4, m
    # by hand: each prediction resized to its image, the files read again, the fixations as written
    val = detect(tmp_path / "s").splits["val"]
    sal, gt, points = [], [], []
    for p, item in zip(pred, val, strict=True):
        with Image.open(item.image) as img:
            size = (img.height, img.width)
        up = torch.nn.functional.interpolate(p[None], size=size, mode="bilinear", align_corners=False)
        sal.append(up[0, 0].double().numpy())
        gt.append(np.array(Image.open(item.target)))
        points.append(formats.fixation_points(item.name, size))
    expected = score_saliency(sal, gt, points, baseline=data.center_bias())
    for m in SALIENCY_METRICS:
        assert at_original[m] == pytest.approx(expected[m], rel=1e-5), m
