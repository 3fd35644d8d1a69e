"""SOD data: procedural scenes, `load_data(..., task="sod")`, the DUTS folder reader and its bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.data import DataError, load_data
from hwnas.data.sod import synthetic_sod


def test_synthetic_sod_is_a_function_of_seed_and_index():
    a, b = synthetic_sod(6, size=(32, 40), seed=4), synthetic_sod(6, size=(32, 40), seed=4)
    assert a.images.shape == (6, 3, 32, 40) and a.fields["mask"].shape == (6, 1, 32, 40)
    assert a.images.dtype == torch.uint8 and a.fields["mask"].dtype == torch.uint8
    assert torch.equal(a.images, b.images) and torch.equal(a.fields["mask"], b.fields["mask"])
    assert torch.equal(synthetic_sod(3, size=(32, 40), seed=4).fields["mask"], a.fields["mask"][:3])
    assert not torch.equal(a.images, synthetic_sod(6, size=(32, 40), seed=5).images)


def test_synthetic_masks_are_binary_non_empty_and_mark_saturated_objects():
    split = synthetic_sod(40, size=(48, 48), seed=0)
    masks = split.fields["mask"]
    assert set(masks.unique().tolist()) == {0, 255}
    assert (masks.amax((1, 2, 3)) == 255).all()  # every image has an object
    assert ((masks > 0).float().mean((1, 2, 3)) < 0.6).all()  # ... and background
    assert (synthetic_sod(20, size=(8, 8), seed=1).fields["mask"].amax((1, 2, 3)) == 255).all()  # even tiny
    rgb = split.images.float() / 255
    saturation = rgb.amax(1) - rgb.amin(1)  # (N, H, W)
    inside = masks[:, 0] > 0
    assert saturation[inside].mean() > 0.7 and saturation[~inside].mean() < 0.2
    # clutter of the same colours lies outside the objects: colour alone does not tell them apart
    clutter = ((saturation > 0.5) & ~inside).float().mean((1, 2))
    assert (clutter > 0).float().mean() > 0.9 and float(clutter.max()) < 0.1


def test_load_synthetic_sod_splits_and_batches():
    data = load_data("synthetic", task="sod", size=(32, 32), train_size=8, val_size=4)
    assert data.name == "synthetic" and data.task == "sod"
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 4)
    assert not data.test.images.equal(data.val.images) and not data.test.images.equal(data.train.images[:4])
    again = load_data("synthetic", task="sod", size=(32, 32), train_size=8, val_size=4)
    assert data.test.fields["mask"].equal(again.test.fields["mask"])
    split = data.split("train", (24, 20))  # width x height: bilinear-resized masks have grey edges
    assert split.images.shape == (8, 3, 20, 24) and split.fields["mask"].shape == (8, 1, 20, 24)
    batch = data.batch(split, [0, 1, 2])
    assert set(batch) == {"image", "mask"} and batch["mask"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0} and batch["mask"].shape == (3, 1, 20, 24)


def test_sod_variants_are_served_as_sod():
    plain = load_data("synthetic", task="sod", size=(16, 16), train_size=2, val_size=1)
    for task in ("sod+focus", "sod/unet", "sod/cfem+focus"):
        data = load_data("synthetic", task=task, size=(16, 16), train_size=2, val_size=1)
        assert data.task == task and data.train.fields["mask"].equal(plain.train.fields["mask"])
    with pytest.raises(DataError, match="is for the saliency, sod or segmentation task, not classification"):
        load_data("synthetic", task="classification", size=(16, 16))
    with pytest.raises(DataError, match="is for the classification task, not sod"):
        load_data("digits", task="sod", size=(16, 16))


# ---- DUTS folders ------------------------------------------------------------------------------
def _write(root, part, name, size=(32, 24), mask=None, mask_size=None, image=True, suffix=".png"):
    """An RGB image `name``suffix` (w, h = size) and its mask `name`.png: `mask` or a 0/255 rectangle."""
    w, h = size
    for kind in ("Image", "Mask"):
        (root / part / f"{part}-{kind}").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(name.encode()))
    if image:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / part / f"{part}-Image/{name}{suffix}"
        )
    if mask is None:
        mw, mh = mask_size or size
        mask = np.zeros((mh, mw), dtype=np.uint8)
        mask[mh // 4 : mh // 2, mw // 4 : mw // 2] = 255
    if mask is not False:
        Image.fromarray(mask).save(root / part / f"{part}-Mask/{name}.png")


def test_duts_folder_reads_with_a_seeded_split(tmp_path):
    for i in range(10):
        _write(tmp_path, "DUTS-TR", f"tr{i}")
    for i in range(3):
        _write(tmp_path, "DUTS-TE", f"te{i}", size=(40, 30), suffix=".jpg")  # DUTS's form, another size
    data = load_data(str(tmp_path), task="sod", size=(24, 32))
    assert (len(data.train), len(data.val)) == (9, 1)  # 10% of 10, at least 1
    train, val = data.train.rows(slice(None)), data.val.rows(slice(None))  # streamed: read as asked for
    assert train["image"].shape == (9, 3, 24, 32) and val["mask"].shape == (1, 1, 24, 32)
    expected = torch.zeros(24, 32, dtype=torch.uint8)
    expected[6:12, 8:16] = 255  # at the stored size a mask comes back unchanged
    assert all(torch.equal(m[0], expected) for m in train["mask"])
    assert not any(torch.equal(val["image"][0], img) for img in train["image"])  # a partition
    t = data.test.rows(slice(None))
    assert t["image"].shape == (3, 3, 24, 32) and set(t["mask"].unique().tolist()) == {0, 255}
    assert [truth.size for truth in data.test.truths] == [(30, 40)] * 3  # the original size, for scoring

    def names(seed: int) -> list[str]:
        return [item.name for item in load_data(str(tmp_path), task="sod", size=(24, 32), seed=seed).val.items]

    assert names(1) == names(1) and names(1) != names(0)  # seeded
    data = load_data(str(tmp_path), task="sod+focus", size=(12, 16), seed=0)
    assert data.name == tmp_path.name and len(data.train) == 9 and data.test.rows([0])["image"].shape == (1, 3, 12, 16)


def test_duts_masks_0_1_and_anti_aliased_edges_become_0_255(tmp_path):
    ones = np.zeros((24, 32), dtype=np.uint8)
    ones[2:10, 3:9] = 1
    soft = ones * 255
    soft[10, 3:9] = 100  # a grey rim below the object: under 128, background
    soft[1, 3:9] = 200  # above it: over 128, object
    _write(tmp_path, "DUTS-TR", "a", mask=ones)
    _write(tmp_path, "DUTS-TR", "b", mask=soft)
    data = load_data(str(tmp_path), task="sod", size=(24, 32))
    got = sorted((s.rows([0])["mask"][0, 0] for s in (data.train, data.val)), key=lambda m: int((m > 0).sum()))
    assert torch.equal(got[0], torch.from_numpy(ones * 255))
    expected = ones * 255
    expected[1, 3:9] = 255
    assert torch.equal(got[1], torch.from_numpy(expected))


def test_duts_non_binary_mask_is_refused(tmp_path):
    _write(tmp_path, "DUTS-TR", "good")
    _write(tmp_path, "DUTS-TR", "grey", mask=(np.arange(24 * 32) % 256).astype(np.uint8).reshape(24, 32))
    data = load_data(str(tmp_path), task="sod", size=(24, 32))  # streamed: a mask's values are read with its row
    with pytest.raises(DataError, match=r"mask grey.png is not binary: it has 256 distinct values \(0\.\.255\)"):
        for split in (data.train, data.val):
            list(data.batches(split, 1))  # read by a worker process: its error comes out as itself


def test_duts_mask_of_another_size_is_refused(tmp_path):
    _write(tmp_path, "DUTS-TR", "good")
    _write(tmp_path, "DUTS-TR", "odd", size=(40, 30), mask_size=(20, 15))
    with pytest.raises(DataError, match="odd.png is 40x30 but its mask odd.png is 20x15"):
        load_data(str(tmp_path), task="sod", size=(24, 32))


def test_duts_missing_masks_are_named(tmp_path):
    _write(tmp_path, "DUTS-TR", "good")
    _write(tmp_path, "DUTS-TR", "good2")
    _write(tmp_path, "DUTS-TR", "extra", mask=False)
    with pytest.raises(
        DataError, match=r"1 of 3 images in DUTS-TR/DUTS-TR-Image have no ground truth file: extra.png \(mask\)"
    ):
        load_data(str(tmp_path), task="sod", size=(24, 32))


def test_duts_bad_layouts(tmp_path):
    (tmp_path / "DUTS-TR" / "DUTS-TR-Image").mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing folder DUTS-TR/DUTS-TR-Mask \(masks\)"):
        load_data(str(tmp_path), task="sod", size=(24, 32))
    (tmp_path / "DUTS-TR" / "DUTS-TR-Mask").mkdir()
    with pytest.raises(DataError, match=r"no .jpg/.png images in DUTS-TR/DUTS-TR-Image"):
        load_data(str(tmp_path), task="sod", size=(24, 32))
    _write(tmp_path, "DUTS-TR", "only")
    with pytest.raises(DataError, match="1 labelled image.*need at least 2"):
        load_data(str(tmp_path), task="sod", size=(24, 32))
    _write(tmp_path, "DUTS-TR", "broken", image=False)
    (tmp_path / "DUTS-TR" / "DUTS-TR-Image" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken.jpg"):
        load_data(str(tmp_path), task="sod", size=(24, 32))


def test_duts_without_test_split_says_so_when_asked(tmp_path):
    for i in range(3):
        _write(tmp_path, "DUTS-TR", f"tr{i}")
    data = load_data(str(tmp_path), task="sod", size=(24, 32))  # no DUTS-TE: fine until the test split is asked
    assert len(data.train) + len(data.val) == 3
    with pytest.raises(DataError, match=r"DUTS dataset .* has no test split \(it has: train, val\)"):
        _ = data.test
