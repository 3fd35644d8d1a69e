"""Semantic segmentation (MoSegNAS's task): the head, its loss, mIoU as Cityscapes computes it, the
Cityscapes and images+masks readers, and a mini supernet trained, searched under a latency budget
and exported to ONNX and TFLite through the CLI."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.data import DataError, load_data
from hwnas.data.layout import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_TRAIN_IDS,
    COCO_STUFF_CLASSES,
    COCO_STUFF_IDS,
    VOC_CLASSES,
)
from hwnas.data.metrics.segmentation import class_iou, confusion_matrix, segmentation_scores
from hwnas.data.segmentation import SYNTHETIC_CLASSES, synthetic_segmentation
from hwnas.errors import HwnasError
from hwnas.hardware.table import LatencyTable
from hwnas.nn.supernet import Supernet, build_subnet
from hwnas.train.losses import class_targets, segmentation_loss
from hwnas.train.task import SegmentationTask, make_task
from tests.cli import one_error_line, run_cli
from tests.segdata import (
    CITYSCAPES_IDS,
    COCO_STUFF_EXPECTED,
    cityscapes_labels,
    coco_stuff_labels,
    voc_labels,
    write_cityscapes,
    write_coco_stuff,
    write_images_masks,
    write_voc,
)


# ---- mIoU on hand-computed confusion matrices --------------------------------------------------
def test_confusion_matrix_and_miou_by_hand():
    # image 1: truth row [0 0 1 1 255 2], prediction [0 1 1 1 2 2]; image 2: truth [1 255 0], prediction [0 0 0]
    pred = [np.array([[0, 1, 1, 1, 2, 2]]), np.array([[0, 0, 0]])]
    truth = [np.array([[0, 0, 1, 1, 255, 2]]), np.array([[1, 255, 0]])]
    matrix = confusion_matrix(pred, truth, 4)
    # rows truth, columns prediction; the two 255 pixels count nowhere; class 3 neither labelled nor predicted
    expected = np.array([[2, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert matrix.tolist() == expected.tolist()
    iou = class_iou(matrix)
    # class 0: TP 2, FP 1 (truth 1 -> 0), FN 1 (truth 0 -> 1): 2/4; class 1: TP 2, FP 1, FN 1: 2/4; class 2: 1/1
    assert iou[:3].tolist() == [0.5, 0.5, 1.0] and np.isnan(iou[3])
    scores = segmentation_scores(matrix)
    assert scores["miou"] == pytest.approx(2 / 3)  # the mean over the classes that occur (Cityscapes)
    assert scores["pixel_acc"] == pytest.approx(5 / 7)


def test_one_matrix_over_the_split_is_not_the_mean_of_per_image_mious():
    pred = [np.zeros((1, 4), dtype=np.int64), np.array([[1, 1, 1, 0]])]
    truth = [np.array([[0, 0, 0, 1]]), np.array([[1, 1, 1, 1]])]
    iou = class_iou(confusion_matrix(pred, truth, 2))  # class 0: TP 3, FP 2, FN 0; class 1: TP 3, FP 0, FN 2
    assert iou.tolist() == [0.6, 0.6]
    per_image = [segmentation_scores(confusion_matrix([p], [t], 2))["miou"] for p, t in zip(pred, truth, strict=True)]
    assert np.mean(per_image) != pytest.approx(0.6)


def test_task_scores_resize_probabilities_to_each_label_size():
    task = SegmentationTask(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = torch.tensor([[5.0, -5.0], [-5.0, -5.0]])  # class 2 top-left, class 0 elsewhere
    from hwnas.data.truth import Truth

    label = np.zeros((4, 4), dtype=np.uint8)
    label[:2, :2] = 2
    label[3, 3] = 255
    scores = task.scores(task.prediction(logits), [Truth("a", (4, 4), dense=label)])
    assert scores["miou"] == pytest.approx(1.0) and scores["pixel_acc"] == pytest.approx(1.0)
    assert np.isnan(scores["iou/1"]) and scores["iou/2"] == 1.0
    from hwnas.files import nan_to_none

    assert json.loads(json.dumps(nan_to_none(scores), allow_nan=False))["iou/1"] is None  # reports stay JSON


# ---- the loss ----------------------------------------------------------------------------------
def test_loss_is_cross_entropy_with_an_ignore_label_and_aux_heads_add():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (2, 1, 8, 8), dtype=torch.uint8)
    labels[0, 0, :3] = 255
    logits = torch.randn(2, 5, 8, 8)
    labelled = labels[:, 0] != 255
    target = class_targets(labels, 5)
    assert target.sum(1)[labelled].eq(1).all() and target.sum(1)[~labelled].eq(0).all()
    expected = F.cross_entropy(logits, labels[:, 0].long(), ignore_index=255)
    assert float(segmentation_loss(logits, target, labelled)) == pytest.approx(float(expected), rel=1e-6)
    aux = torch.randn(2, 5, 2, 2)
    up = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
    aux_ce = F.cross_entropy(up, labels[:, 0].long(), ignore_index=255)
    total = segmentation_loss(logits, target, labelled, (aux,))
    assert float(total) == pytest.approx(float(expected + aux_ce), rel=1e-6)
    task = make_task("segmentation+aux", 5)
    assert float(task.loss((logits, aux), target, {"seg": labels})) == pytest.approx(float(total), rel=1e-6)


def _two_class(p_label: list[float], ignored: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, one-hot targets and the labelled mask of one row of pixels labelled 0 whose label has
    probability `p_label`, then `ignored` pixels labelled 255."""
    p = torch.tensor(p_label + [0.5] * ignored)
    logits = torch.stack([torch.log(p / (1 - p)), torch.zeros_like(p)]).reshape(1, 2, 1, -1)
    labels = torch.tensor([0] * len(p_label) + [255] * ignored, dtype=torch.uint8).reshape(1, 1, 1, -1)
    return logits, class_targets(labels, 2), labels[:, 0] != 255


def test_ohem_averages_the_hard_pixels_or_the_sixteenth_with_the_largest_losses():
    """By hand: -ln 0.5 = 0.693147 and -ln 0.2 = 1.609438 exceed -ln 0.7 = 0.356675, -ln 0.9 does
    not; with 32 labelled pixels at least 2 count, so the next largest (-ln 0.8 = 0.223144) joins."""
    logits, target, labelled = _two_class([0.9, 0.5, 0.2, 0.95], ignored=2)
    assert float(segmentation_loss(logits, target, labelled, ohem=0.7)) == pytest.approx((0.693147 + 1.609438) / 2)
    plain = float(segmentation_loss(logits, target, labelled))
    assert plain == pytest.approx(-np.log([0.9, 0.5, 0.2, 0.95]).mean(), rel=1e-5)
    logits, target, labelled = _two_class([0.9] * 30 + [0.2, 0.8])
    assert float(segmentation_loss(logits, target, labelled, ohem=0.7)) == pytest.approx((1.609438 + 0.223144) / 2)
    task = make_task("segmentation", 2)
    from dataclasses import replace

    batch = {"seg": torch.tensor([0] * 30 + [0, 0], dtype=torch.uint8).reshape(1, 1, 1, -1)}
    assert float(replace(task, ohem=0.7).loss(logits, target, batch)) == pytest.approx((1.609438 + 0.223144) / 2)


# ---- the head ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["segmentation", "segmentation+aux"])
def test_head_gives_class_logits_and_extracts_exactly(mini, task):
    torch.manual_seed(0)
    model = Supernet(mini, task=task, num_classes=5)
    arch = mini.sample(np.random.default_rng(3))
    model.set_active(arch)
    w, h = arch.resolution
    x = torch.randn(2, 3, h, w)
    sigs = mini.block_signatures(arch, task, 5)
    assert sigs[-1].op == "saldec" and sigs[-1].cout == 5 and sigs[-1].act == "identity"
    assert all(s.op != "blur" for s in sigs)
    model.eval()
    y = model(x)
    assert y.shape == (2, 5, h, w)
    torch.testing.assert_close(model.extract(arch).eval()(x), y, atol=1e-5, rtol=1e-5)
    model.train()
    net = model.extract(arch)  # the same batch-norm statistics before the two training-mode passes
    out, again = model(x), net(x)
    if task == "segmentation+aux":  # training only: the main logits and BiSeNet's two auxiliary heads
        assert len(out) == 3 and out[1].shape[:2] == (2, 5) and out[2].shape[:2] == (2, 5)
        for a, b in zip(out, again, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(out, again, atol=1e-5, rtol=1e-5)
    fresh = build_subnet(mini, arch, task=task, num_classes=5)  # what latency measures: no aux in eval
    head_params = sum(p.numel() for n, p in fresh.named_parameters() if not n.startswith("aux."))
    assert head_params == mini.params(arch, task, 5)


# ---- data --------------------------------------------------------------------------------------
def test_synthetic_scenes_have_every_class_an_ignore_label_and_are_seeded():
    a, b = synthetic_segmentation(24, size=(48, 48), seed=2), synthetic_segmentation(24, size=(48, 48), seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.fields["seg"], b.fields["seg"])
    values = set(a.fields["seg"].unique().tolist())
    assert values == {*range(len(SYNTHETIC_CLASSES)), 255}
    data = load_data("synthetic", task="segmentation", size=(32, 32), train_size=8, val_size=4)
    assert data.num_classes == 4 and data.class_names == SYNTHETIC_CLASSES
    small = data.split("train", (20, 16)).fields["seg"]  # nearest neighbour: only ids, never a blend
    assert small.shape == (8, 1, 16, 20) and set(small.unique().tolist()) <= {0, 1, 2, 3, 255}


@pytest.mark.slow
def test_cityscapes_reader_maps_label_ids_to_train_ids(tmp_path):
    write_cityscapes(tmp_path, test=True)
    data = load_data(str(tmp_path), task="segmentation", size=(8, 16))
    assert data.num_classes == 19 and data.class_names == CITYSCAPES_CLASSES
    assert (len(data.train), len(data.val), len(data.test)) == (4, 2, 1) and not data.test.labelled
    truths = data.val.ground_truth(original=True)
    assert [t.name for t in truths] == ["frankfurt/frankfurt_000000_000000", "frankfurt/frankfurt_000000_000001"]
    expected = np.vectorize(CITYSCAPES_IDS.get)(cityscapes_labels(32, 16, shift=0))
    assert truths[0].size == (16, 32) and np.array_equal(truths[0].array(), expected)
    assert set(np.unique(data.train.rows(slice(None))["seg"]).tolist()) == {0, 13, 10, 255, 18}
    assert CITYSCAPES_TRAIN_IDS[26] == 13 and CITYSCAPES_CLASSES[13] == "car"
    proc = run_cli("data", "check", str(tmp_path))
    assert "Cityscapes (segmentation)" in proc.stdout and "4 of 19" in proc.stdout and "road, sidewalk" in proc.stdout


def test_images_masks_reader_takes_palette_indices_and_the_class_list(tmp_path):
    write_images_masks(tmp_path, classes=["sky", "tree", "road"])
    data = load_data(str(tmp_path), task="segmentation", size=(12, 16))
    assert data.num_classes == 3 and data.class_names == ("sky", "tree", "road")
    assert set(np.unique(data.train.rows(slice(None))["seg"]).tolist()) == {0, 1, 2, 255}
    with pytest.raises(DataError, match="for the segmentation task, not sod"):
        load_data(str(tmp_path), task="sod", size=(12, 16))


def test_voc_reader_builds_train_aug_from_voc_and_sbd(tmp_path):
    """VOC val stays out of training even where SBD lists it; VOC's PNG labels an image where it
    has one (outlines 255), SBD's GTcls.Segmentation the others; without SBD, VOC's train list."""
    write_voc(tmp_path)
    data = load_data(str(tmp_path), task="segmentation", size=(12, 20))
    assert data.num_classes == 21 and data.class_names == VOC_CLASSES
    train, val = data.train.ground_truth(original=True), data.val.ground_truth(original=True)
    assert [t.name for t in train] == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    assert [t.name for t in val] == ["2007_000033"]
    assert np.array_equal(train[0].array(), voc_labels(20, 12, 1)) and 255 in train[0].array()
    sbd = voc_labels(20, 12, 10)
    sbd[sbd == 255] = 0
    assert np.array_equal(train[2].array(), sbd)  # 2008_000002: SBD's .mat, the first of its lists
    assert np.array_equal(val[0].array(), voc_labels(20, 12, 3))  # VOC's PNG, not SBD's .mat of it
    alone = tmp_path / "voc-alone"
    write_voc(alone, sbd_train=None)
    assert len(load_data(str(alone), task="segmentation", size=(12, 20)).train) == 2


def test_coco_stuff_reader_maps_label_ids_to_its_171_classes(tmp_path):
    write_coco_stuff(tmp_path)
    data = load_data(str(tmp_path), task="segmentation", size=(12, 20))
    assert data.num_classes == 171 and data.class_names[0] == "person" and data.class_names[170] == "wood"
    assert (len(data.train), len(data.val)) == (2, 1)  # the test list is the validation split
    (truth,) = data.val.ground_truth(original=True)
    assert truth.name == "COCO_train2014_000000000081"
    assert np.array_equal(truth.array(), np.vectorize(COCO_STUFF_EXPECTED.get)(coco_stuff_labels(20, 12, shift=2)))
    assert COCO_STUFF_IDS[12] == COCO_STUFF_IDS[91] == 255 and COCO_STUFF_CLASSES[COCO_STUFF_IDS[92]] == "banner"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("voc-no-val", "missing split list VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"),
        ("voc-size", "2007_000032.jpg is 20x12 but its label map 2007_000032.png is 18x12"),
        ("sbd-field", "label file 2008_000002.mat has no field GTcls.Segmentation"),
        ("coco-bad-id", "holds 200, outside the class list: allowed are label ids 0..182"),
        ("coco-no-test", "missing split list imageLists/test.txt"),
    ],
)
def test_bad_voc_and_coco_stuff_folders_are_one_line(tmp_path, case, message):
    if case == "voc-no-val":
        write_voc(tmp_path)
        (tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").unlink()
    elif case == "voc-size":
        write_voc(tmp_path, label_size=(18, 12))
    elif case == "sbd-field":
        write_voc(tmp_path, mat_field="Boundaries")
    elif case == "coco-bad-id":
        write_coco_stuff(tmp_path, bad_id=200)
    else:
        write_coco_stuff(tmp_path, skip_list="test")
    proc = run_cli("data", "check", str(tmp_path), check=False)
    assert proc.returncode == 2 and message in one_error_line(proc)


@pytest.mark.slow
def test_voc_and_coco_stuff_in_data_check_and_evaluate(tmp_path):
    write_voc(tmp_path / "voc")
    write_coco_stuff(tmp_path / "coco")
    voc = run_cli("data", "check", str(tmp_path / "voc")).stdout
    assert "PASCAL VOC (segmentation)" in voc and "train_aug" in voc
    coco = run_cli("data", "check", str(tmp_path / "coco")).stdout
    assert "COCO-Stuff-10K (segmentation)" in coco and "171 classes" in coco
    ckpt = tmp_path / "voc.pt"
    run_cli("train", "supernet", "--space", "mini", "--task", "segmentation", "--data", str(tmp_path / "voc"),
            "--epochs", "1", "--batch-size", "2", "--out", str(ckpt))  # fmt: skip
    out = tmp_path / "scores.json"
    run_cli("evaluate", "--supernet", str(ckpt), "--arch", "max", "--data", str(tmp_path / "voc"), "--json", str(out))
    (row,) = json.loads(out.read_text())["rows"]
    assert row["dataset"] == "PASCAL VOC" and row["images"] == 1 and 0 <= row["scores"]["miou"] <= 1
    wrong = run_cli("evaluate", "--supernet", str(ckpt), "--arch", "max", "--data", str(tmp_path / "coco"), check=False)
    assert "predicts 21 classes but COCO-Stuff-10K has 171" in one_error_line(wrong)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cityscapes-bad-id", "holds 40, outside the class list: allowed are label ids 0..33"),
        ("cityscapes-size", "is 32x16 but its label map aachen_000000_000000_gtFine_labelIds.png is 30x16"),
        ("cityscapes-no-city", "missing folder gtFine/train/bochum (the labels of leftImg8bit/train/bochum)"),
        ("masks-bad-id", "holds 7, outside the class list: allowed are class ids 0..2 (3 classes) and 255"),
    ],
)
def test_bad_segmentation_data_stops_training_in_one_line(tmp_path, case, message):
    """(`hwnas data check` on the same folders: the bad-input catalogue.)"""
    if case == "cityscapes-bad-id":
        write_cityscapes(tmp_path, bad_id=40)
    elif case == "cityscapes-size":
        write_cityscapes(tmp_path, cities={"train": ["aachen"], "val": ["frankfurt"]}, label_size=(30, 16))
    elif case == "cityscapes-no-city":
        write_cityscapes(tmp_path, skip_labels="bochum")
    else:
        write_images_masks(tmp_path, classes=["a", "b", "c"], bad_id=7)
    args = [
        "train",
        "supernet",
        "--space",
        "mini",
        "--task",
        "segmentation",
        "--data",
        str(tmp_path),
        "--batch-size",
        "2",
    ]
    line = one_error_line(run_cli(*args, "--out", str(tmp_path / "x.pt"), check=False))
    assert message in line and not (tmp_path / "x.pt").exists()


# ---- the whole path through the CLI ------------------------------------------------------------
@pytest.mark.slow
def test_mini_segmentation_trains_searches_under_a_budget_and_exports_verified(tmp_path):
    ckpt, lut = tmp_path / "seg.pt", tmp_path / "seg-cpu.parquet"
    proc = run_cli(
        "train", "supernet", "--space", "mini", "--task", "segmentation+aux", "--epochs", "1", "--train-size", "16",
        "--val-size", "8", "--out", str(ckpt),
    )  # fmt: skip
    assert "miou " in proc.stdout and "pixel_acc " in proc.stdout
    run_cli(
        "profile", "--device", "cpu", "--space", "mini", "--task", "segmentation+aux", "--classes", "4",
        "--resolution", "32x32", "--rounds", "1", "--out", str(lut),
    )  # fmt: skip
    table = LatencyTable.load(lut)
    assert table.classes == 4 and table.meta["task"] == "segmentation+aux"
    space = table.space
    rng = np.random.default_rng(0)  # a budget three random subnets in four meet, however the timings fell
    limit = float(
        np.quantile([table.predict(replace(space.sample(rng), resolution=(32, 32))) for _ in range(200)], 0.75)
    )
    budget = f"{limit:.3f}ms"
    out = tmp_path / "search"
    proc = run_cli(
        "search", "--device", "cpu", "--budget", budget, "--supernet", str(ckpt), "--lut", str(lut), "--algo",
        "random", "--evals", "6", "--out", str(out),
    )  # fmt: skip
    best = json.loads((out / "best.json").read_text())
    chosen = space.arch_from_dict(best)
    assert table.predict(chosen) <= float(budget[:-2]) * 1.001 and "miou (supernet)" in proc.stdout
    exported = tmp_path / "export"
    run_cli(
        "export", "--supernet", str(ckpt), "--arch", str(out / "best.json"), "--format", "onnx,tflite", "--device",
        "cpu", "--lut", str(lut), "--out", str(exported),
    )  # fmt: skip
    for suffix in ("onnx", "tflite"):
        manifest = json.loads(next(exported.glob(f"*.{suffix}.json")).read_text())
        assert manifest["output"]["task"] == "segmentation+aux" and manifest["output"]["num_classes"] == 4
        numerics = manifest["verification"]["numerics"]
        assert numerics["passed"] and numerics["max_abs"] < 1e-4, numerics
    proc = run_cli("evaluate", "--supernet", str(ckpt), "--arch", str(out / "best.json"))
    assert "mIoU" in proc.stdout and "3 bar" in proc.stdout
    report = tmp_path / "report.json"
    args = ["report", "--device", "cpu", "--arch", str(out / "best.json"), "--supernet", str(ckpt), "--lut", str(lut)]
    run_cli(*args, "--batch", "2", "--passes", "5", "--json", str(report))
    measures = {m["name"]: m["value"] for m in json.loads(report.read_text())["measures"]}
    assert measures["params"] == pytest.approx(space.params(chosen, "segmentation", 4) / 1e6)
    table.meta["classes"] = 19  # a table of another class count is refused before any search
    table.save(lut)
    args = ["search", "--device", "cpu", "--budget", budget, "--supernet", str(ckpt), "--lut", str(lut)]
    line = one_error_line(run_cli(*args, "--out", str(tmp_path / "s2"), check=False))
    assert "the supernet predicts 4 classes but the latency table profiled 19: profile with --classes 4" in line


def test_multi_scale_inference_averages_the_class_probabilities_of_each_scale():
    """MoSegNAS's multi-scale row: the image at each scale x the input size (a multiple of 32 for
    BiSeNet's heads), each softmax resized back bilinearly, their mean; by hand here."""
    from pathlib import Path

    from hwnas.space import SearchSpace
    from hwnas.train.evaluation import Predictions

    space = SearchSpace.load(Path(__file__).parent / "data" / "mosegnas-micro.toml")
    data = load_data("synthetic", task="segmentation", size=(32, 64), train_size=4, val_size=3)
    torch.manual_seed(0)
    net = build_subnet(space, replace(space.min(), resolution=(64, 32)), task="segmentation", num_classes=4).eval()
    task = make_task("segmentation", 4)
    single = torch.stack(list(Predictions(net, data, task, scales=(1.0,))))
    multi = torch.stack(list(Predictions(net, data, task, scales=(0.5, 1.0, 1.5))))
    image = data.batch(data.split("val", (64, 32)), slice(None))["image"]
    with torch.no_grad():
        by_hand = [F.softmax(net(F.interpolate(image, size=size, mode="bilinear")), 1) for size in ((32, 32), (64, 96))]
    by_hand = [F.interpolate(p, size=(32, 64), mode="bilinear") for p in by_hand]  # 0.5: 16x32 -> one 32 each
    torch.testing.assert_close(multi, (by_hand[0] + single + by_hand[1]) / 3, rtol=1e-5, atol=1e-6)
    with pytest.raises(HwnasError, match="--scales must be distinct numbers from 0.25 to 4"):
        Predictions(net, data, task, scales=(1.0, 1.0))
    with pytest.raises(HwnasError, match="--scales averages segmentation's class probabilities"):
        Predictions(net, data, make_task("saliency"), scales=(1.0, 2.0))
