"""Datasets: synthetic scenes, the SALICON-layout folder reader and its bad inputs, digits."""

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.data import DataError, load_data
from hwnas.data.split import resize_fixations
from hwnas.data.synthetic import FIXATIONS_PER_IMAGE, synthetic_saliency


def test_synthetic_is_a_function_of_seed_and_index():
    a, b = synthetic_saliency(6, size=(32, 32), seed=4), synthetic_saliency(6, size=(32, 32), seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.fields["map"], b.fields["map"])
    assert not torch.equal(a.images, synthetic_saliency(6, size=(32, 32), seed=5).images)
    assert torch.equal(synthetic_saliency(3, size=(32, 32), seed=4).images, a.images[:3])
    counts = a.fields["fix"].sum((1, 2, 3))
    assert (counts >= FIXATIONS_PER_IMAGE - 4).all() and (counts <= FIXATIONS_PER_IMAGE).all()
    assert (a.fields["map"].amax((1, 2, 3)) == 255).all()


def test_fixations_follow_the_map():
    split = synthetic_saliency(20, size=(48, 48), seed=0)
    maps, fix = split.fields["map"].float(), split.fields["fix"]
    assert maps[fix].mean() > 3 * maps.mean()


def test_resize_keeps_every_fixation_in_its_cell():
    fix = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    fix[0, 0, 1, 6] = fix[0, 0, 7, 0] = True
    small = resize_fixations(fix, (4, 4))
    assert small.nonzero().tolist() == [[0, 0, 0, 3], [0, 0, 3, 0]]
    big = resize_fixations(fix, (16, 16))
    assert big.sum() == 2 and big[0, 0, 3, 13] and big[0, 0, 15, 1]


def test_dataset_resizes_and_normalises():
    data = load_data("synthetic", task="saliency", size=(64, 64), train_size=8, val_size=4)
    split = data.split("train", (32, 48))  # width x height
    assert split.images.shape == (8, 3, 48, 32) and data.split("train", (32, 48)) is split
    batch = data.batch(split, [0, 2])
    assert batch["image"].dtype == torch.float32 and batch["map"].max() <= 1 and set(batch) == {"image", "map", "fix"}
    assert abs(float(batch["image"].mean())) < 2


def test_synthetic_test_split_is_held_out_and_repeatable():
    data = load_data("synthetic", task="saliency", size=(32, 32), train_size=8, val_size=4)
    again = load_data("synthetic", task="saliency", size=(32, 32), train_size=8, val_size=4)
    assert len(data.test) == 4 and data.test.images.equal(again.test.images)
    assert not data.test.images.equal(data.val.images) and not data.test.images.equal(data.train.images[:4])
    view = data.scored_on_test()
    assert view.val is data.test and view.train is data.train
    merged = data.with_val_in_train()
    assert len(merged.train) == 12 and merged.train.images[8:].equal(data.val.images)


def test_digits_split():
    data = load_data("digits", task="classification", size=(16, 16))
    assert len(data.train) + len(data.val) + len(data.test) == 1797 and data.num_classes == 10
    assert (len(data.val), len(data.test)) == (359, 180)
    from sklearn.datasets import load_digits

    labels = torch.cat([s.fields["label"] for s in (data.train, data.val, data.test)])
    assert sorted(labels.tolist()) == sorted(load_digits().target.tolist())  # a partition: no row in two splits
    assert data.train.images.shape[1:] == (3, 16, 16)
    assert set(data.val.fields["label"].tolist()) == set(range(10))
    with pytest.raises(DataError, match="classification task, not saliency"):
        load_data("digits", task="saliency", size=(16, 16))


# ---- SALICON-layout folders ------------------------------------------------------------------
def _write(root, split, name, size=(40, 30), map_size=None, fix_size=None, suffix=".jpg"):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    w, h = size
    for kind in ("images", "maps", "fixations"):
        (root / kind / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / split / f"{name}{suffix}")
    mw, mh = map_size or size
    Image.fromarray(rng.integers(0, 255, (mh, mw), dtype=np.uint8)).save(root / "maps" / split / f"{name}.png")
    fw, fh = fix_size or size
    fix = np.zeros((fh, fw), dtype=np.uint8)
    fix[fh // 2, fw // 3] = 255
    fix[1, 1] = 255
    Image.fromarray(fix).save(root / "fixations" / split / f"{name}.png")


def _folder(tmp_path, sizes=((40, 30), (64, 48))):
    root = tmp_path / "sal"
    for i, size in enumerate(sizes):
        _write(root, "train", f"tr{i}", size=size)
        _write(root, "val", f"va{i}", size=size, suffix=".png")
    return root


def test_salicon_folder_of_mixed_sizes_is_resized(tmp_path):
    root = _folder(tmp_path)
    data = load_data(str(root), task="saliency", size=(24, 32))  # streamed from disk: rows read as asked for
    train, val = data.train.rows(slice(None)), data.val.rows(slice(None))
    assert train["image"].shape == (2, 3, 24, 32) and val["map"].shape == (2, 1, 24, 32)
    assert train["fix"].sum((1, 2, 3)).tolist() == [2, 2]
    with pytest.raises(DataError, match="has no test split"):
        data.scored_on_test()
    _write(root, "test", "te0")
    assert load_data(str(root), task="saliency", size=(24, 32)).test.rows([0])["image"].shape == (1, 3, 24, 32)


def test_salicon_missing_maps_are_named(tmp_path):
    root = _folder(tmp_path)
    _write(root, "train", "extra")
    (root / "maps" / "train" / "extra.png").unlink()
    (root / "fixations" / "train" / "tr0.png").unlink()
    with pytest.raises(
        DataError,
        match=r"2 of 3 images in images/train have no ground truth file: extra.jpg \(map\), tr0.jpg \(fixations\)",
    ):
        load_data(str(root), task="saliency", size=(24, 32))


def test_salicon_map_of_another_size_is_refused(tmp_path):
    root = _folder(tmp_path)
    _write(root, "val", "odd", size=(40, 30), map_size=(20, 15))
    with pytest.raises(DataError, match="odd.jpg is 40x30 but its map odd.png is 20x15"):
        load_data(str(root), task="saliency", size=(24, 32))


def test_salicon_bad_layouts(tmp_path):
    root = _folder(tmp_path)
    (root / "images" / "val" / "va0.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image .*va0.png"):
        load_data(str(root), task="saliency", size=(24, 32))
    with pytest.raises(DataError, match=r"no dataset format found in .*empty \(it holds: images\); known formats"):
        (tmp_path / "empty" / "images" / "train").mkdir(parents=True)
        load_data(str(tmp_path / "empty"), task="saliency", size=(24, 32))
    (tmp_path / "empty" / "maps" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="SALICON dataset .*: missing split images/val"):
        load_data(str(tmp_path / "empty"), task="saliency", size=(24, 32))
    with pytest.raises(DataError, match="neither a built-in set"):
        load_data(str(tmp_path / "nowhere"), task="saliency", size=(24, 32))
