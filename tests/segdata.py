"""Tiny segmentation datasets written in the layouts users download, for the readers' tests."""

from pathlib import Path

import numpy as np
from PIL import Image

# label ids (cityscapesScripts) -> the train ids they map to: road 7 -> 0, car 26 -> 13, sky 23 -> 10,
# unlabeled 0 -> 255, ego vehicle 1 -> 255, bicycle 33 -> 18
CITYSCAPES_IDS = {7: 0, 26: 13, 23: 10, 0: 255, 1: 255, 33: 18}


def cityscapes_labels(w: int, h: int, shift: int = 0) -> np.ndarray:
    """A (h, w) labelIds map: bands of road, car, sky, unlabeled, ego vehicle, bicycle (rolled by `shift`)."""
    ids = np.array(list(CITYSCAPES_IDS), dtype=np.uint8)
    return np.roll(ids[(np.arange(w) * len(ids)) // w][None].repeat(h, 0), shift, axis=1)


def write_cityscapes(
    root: Path,
    *,
    cities: dict[str, list[str]] | None = None,
    size: tuple[int, int] = (32, 16),
    label_size: tuple[int, int] | None = None,
    bad_id: int | None = None,
    skip_labels: str | None = None,
    test: bool = False,
    varied: bool = False,
) -> None:
    """Cityscapes as unzipped: leftImg8bit/{train,val}/CITY/CITY_000000_NNNNNN_leftImg8bit.png and
    gtFine/{train,val}/CITY/..._gtFine_labelIds.png. `bad_id` writes one label id outside 0..33,
    `label_size` labels of another size, `skip_labels` leaves out one city's gtFine folder. With
    `varied` each image has its own brightness and colour cast, as photos do (uniform noise alone
    makes every image's mean the same, and a BN after a global pooling then divides by ~0)."""
    cities = cities or {"train": ["aachen", "bochum"], "val": ["frankfurt"]}
    w, h = size
    lw, lh = label_size or size
    rng = np.random.default_rng(0)
    for split, names in cities.items():
        for c, city in enumerate(names):
            images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            if city != skip_labels:
                labels.mkdir(parents=True, exist_ok=True)
            for frame in range(2):
                stem = f"{city}_000000_{frame:06d}"
                pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                if varied:
                    pixels = (pixels * rng.uniform(0.2, 1.0, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(images / f"{stem}_leftImg8bit.png")
                if city == skip_labels:
                    continue
                ids = cityscapes_labels(lw, lh, shift=c + frame)
                if bad_id is not None:
                    ids[0, 0] = bad_id
                Image.fromarray(ids).save(labels / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(ids).save(labels / f"{stem}_gtFine_instanceIds.png")  # present in the download
    if test:
        folder = root / "leftImg8bit" / "test" / "berlin"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / "berlin_000000_000019_leftImg8bit.png"
        )


def write_images_masks(
    root: Path, *, classes: list[str], n: int = 6, size: tuple[int, int] = (16, 12), bad_id: int | None = None
) -> None:
    """images/NAME.jpg, masks/NAME.png (palette PNGs: their indices are the ids) and classes.txt."""
    w, h = size
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"img{i}.jpg")
        ids = (np.arange(w)[None].repeat(h, 0) * len(classes) // w).astype(np.uint8)
        ids[: h // 4] = 255
        if bad_id is not None:
            ids[-1, -1] = bad_id
        mask = Image.fromarray(ids).convert("P")
        mask.putpalette([v for c in range(256) for v in (c * 40 % 256, c * 90 % 256, c * 150 % 256)])
        mask.save(root / "masks" / f"img{i}.png")


def _voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved, as its devkit builds it): index 0 black, 255 cream."""
    palette = []
    for c in range(256):
        r = g = b = 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def voc_labels(w: int, h: int, first: int) -> np.ndarray:
    """(h, w) class ids: bands of `first`, `first` + 1 and background, outlined by 255 as VOC's are."""
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[:, : w // 3] = first
    ids[:, w // 3 : 2 * w // 3] = first + 1
    ids[:, w // 3] = 255  # an object's outline
    return ids


def write_voc(
    root: Path,
    *,
    voc_train: tuple[str, ...] = ("2007_000032", "2007_000039"),
    voc_val: tuple[str, ...] = ("2007_000033",),
    sbd_train: tuple[str, ...] | None = ("2008_000002", "2007_000033"),
    sbd_val: tuple[str, ...] = ("2008_000003",),
    size: tuple[int, int] = (20, 12),
    label_size: tuple[int, int] | None = None,
    mat_field: str = "Segmentation",
) -> None:
    """VOCtrainval_11-May-2012.tar unpacked (VOCdevkit/VOC2012: JPEGImages, SegmentationClass palette
    PNGs, ImageSets/Segmentation lists) and, unless `sbd_train` is None, SBD's benchmark.tgz beside it
    (benchmark_RELEASE/dataset: cls/NAME.mat holding the struct GTcls with a `mat_field` field, and
    its train/val lists). Images named in SBD only have no VOC PNG; every image is in JPEGImages."""
    from scipy.io import savemat

    voc, sbd = root / "VOCdevkit" / "VOC2012", root / "benchmark_RELEASE" / "dataset"
    for folder in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"):
        folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    lw, lh = label_size or size
    rng = np.random.default_rng(2)
    sbd_only = [] if sbd_train is None else [n for n in (*sbd_train, *sbd_val) if n not in (*voc_train, *voc_val)]
    for i, name in enumerate((*voc_train, *voc_val, *sbd_only)):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
        if name in sbd_only:
            continue
        png = Image.fromarray(voc_labels(lw, lh, 1 + i)).convert("P")
        png.putpalette(_voc_palette())
        png.save(voc / "SegmentationClass" / f"{name}.png")
    for which, names in (("train", voc_train), ("val", voc_val)):
        (voc / "ImageSets" / "Segmentation" / f"{which}.txt").write_text("".join(f"{n}\n" for n in names))
    if sbd_train is None:
        return
    (sbd / "cls").mkdir(parents=True)
    for i, name in enumerate((*sbd_train, *sbd_val)):
        ids = voc_labels(w, h, 10 + i)
        ids[ids == 255] = 0  # SBD draws no outlines
        savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {mat_field: ids, "CategoriesPresent": np.unique(ids)}})
    for which, names in (("train", sbd_train), ("val", sbd_val)):
        (sbd / f"{which}.txt").write_text("".join(f"{n}\n" for n in names))


def coco_stuff_labels(w: int, h: int, shift: int = 0) -> np.ndarray:
    """(h, w) COCO-Stuff label ids: bands of unlabeled 0, person 1, stop sign 13, banner 92, wood 182."""
    ids = np.array([0, 1, 13, 92, 182], dtype=np.uint8)
    return np.roll(ids[(np.arange(w) * len(ids)) // w][None].repeat(h, 0), shift, axis=1)


# COCO-Stuff label id -> hwnas class id (person 0, stop sign 11 after the unused 12, banner 80, wood 170)
COCO_STUFF_EXPECTED = {0: 255, 1: 0, 13: 11, 92: 80, 182: 170}


def write_coco_stuff(
    root: Path,
    *,
    train: tuple[str, ...] = ("COCO_train2014_000000000077", "COCO_train2014_000000000078"),
    test: tuple[str, ...] = ("COCO_train2014_000000000081",),
    size: tuple[int, int] = (20, 12),
    bad_id: int | None = None,
    field: str = "S",
    skip_list: str | None = None,
) -> None:
    """cocostuff-10k-v1.1.zip unpacked: images/NAME.jpg, annotations/NAME.mat (label ids in `field`,
    with the other fields the release has) and imageLists/{train,test,all}.txt; `bad_id` writes one
    label id above 182, `skip_list` leaves a list out."""
    from scipy.io import savemat

    for folder in ("images", "annotations", "imageLists"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(3)
    for i, name in enumerate((*train, *test)):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
        ids = coco_stuff_labels(w, h, shift=i)
        if bad_id is not None:
            ids[0, 0] = bad_id
        savemat(root / "annotations" / f"{name}.mat", {field: ids, "names": np.array(["unlabeled", "person"])})
    for which, names in (("train", train), ("test", test), ("all", (*train, *test))):
        if which != skip_list:
            (root / "imageLists" / f"{which}.txt").write_text("".join(f"{n}\n" for n in names))
