"""The dataset formats users download, told from a folder's contents: `detect(root)`, `find_all(root)`.

Saliency (fixations and continuous maps):

- SALICON (2017 release): `images/{train,val,test}/NAME.jpg`, `maps/{train,val}/NAME.png`,
  `fixations/{train,val}/NAME.mat` (MATLAB structs: `gaze(k).fixations`, rows [x y], one-based),
  or binary `fixations/*/NAME.png` (the converted form many repositories use). The test split has
  images only (the benchmark's hidden set: `hwnas evaluate --submission`).
- MIT1003: `ALLSTIMULI/NAME.jpeg`, `ALLFIXATIONMAPS/NAME_fixMap.jpg` (continuous),
  `ALLFIXATIONMAPS/NAME_fixPts.jpg` (fixated pixels; a JPEG, so pixels above 127 count).
- CAT2000: `trainSet/Stimuli/CATEGORY/NNN.jpg`, `trainSet/FIXATIONMAPS/CATEGORY/NNN.jpg`,
  `trainSet/FIXATIONLOCS/CATEGORY/NNN.mat` (`fixLocs`, a binary image-sized matrix);
  `testSet/Stimuli/CATEGORY/NNN.jpg` without ground truth.
- OSIE: `data/stimuli/NAME.jpg` and one `data/eye/fixations.mat` (a cell per image: `img`, and per
  subject `fix_x`, `fix_y`), as github.com/NUS-VIP/predicting-human-gaze-beyond-pixels ships them.
  No maps ship with OSIE: each image's map is its fixations blurred by a Gaussian of
  `OSIE_SIGMA` x the image's width (hwnas's choice, said by `hwnas data check`).

Salient objects (binary masks):

- DUTS: `DUTS-TR/DUTS-TR-{Image,Mask}/` and `DUTS-TE/DUTS-TE-{Image,Mask}/` (or a `DUTS-TE` folder
  alone); ECSSD: `images/` + `ground_truth_mask/`; HKU-IS: `imgs/` + `gt/`; PASCAL-S:
  `datasets/imgs/pascal/` + `datasets/masks/pascal/` (graded masks: the fraction of annotators,
  thresholded at 128 as the SOD evaluators do); DUT-OMRON: `DUT-OMRON-image/` + `pixelwiseGT-new-PNG/`.

Semantic segmentation (class-id label maps, 255 ignored; `hwnas.data.segmentation` reads them):

- Cityscapes as downloaded (leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip):
  `leftImg8bit/{train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png` and
  `gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png`; label ids 0..33 are mapped to the
  19 train ids of cityscapesScripts' `labels.py`, the rest to 255. The test split's labels are
  withheld by the benchmark: its images are read without ground truth.
- PASCAL VOC 2012 as downloaded (VOCtrainval_11-May-2012.tar), optionally beside SBD
  (benchmark.tgz): `VOCdevkit/VOC2012/{JPEGImages/NAME.jpg, SegmentationClass/NAME.png,
  ImageSets/Segmentation/{train,val}.txt}` and `benchmark_RELEASE/dataset/{cls/NAME.mat, train.txt,
  val.txt}`. The 21 classes (background and VOC's 20) are the palette PNGs' indices, 255 (the
  objects' outlines) ignored. Validation is VOC's val list; training is VOC's train list or, with
  SBD, `train_aug`: VOC train and SBD train and val, less VOC val (10,582 images as downloaded),
  each labelled by VOC's PNG where there is one, else SBD's `GTcls.Segmentation`.
- COCO-Stuff-10K as downloaded (cocostuff-10k-v1.1.zip): `images/NAME.jpg`, `annotations/NAME.mat`
  (field `S`: 0 unlabeled, 1..182 COCO-Stuff's label ids) and `imageLists/{train,test}.txt` (9,000
  and 1,000 images). The 171 classes used (COCO's 80 things and the 91 stuff classes; the 11 thing
  ids COCO never annotated are left out, as the deeplab and mmsegmentation benchmarks do) get ids
  0..170 in label-id order, unlabeled 255; the test list is the validation split.
- images + masks: `images/NAME.{jpg,png}`, `masks/NAME.png` (single-channel class ids, or a
  palette PNG's indices; 255 = ignore) and `classes.txt`, one class name per line (line i = id i);
  validation is a seeded split.

Formats without a validation split (MIT1003, CAT2000, OSIE; DUTS-TR) get a fixed, seeded one
(`VAL_FRACTION` of the training images). ECSSD, HKU-IS, PASCAL-S and DUT-OMRON are test sets only.
A folder whose sub-folders are datasets (the five SOD test sets side by side) is a collection
(`find_all`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.data.split import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VAL_FRACTION = 0.1
OSIE_SIGMA = 0.03  # of the image's width: 24 px on OSIE's 800x600 stimuli


@dataclass(frozen=True, eq=False)
class Item:
    """One image as found on disk: `target` the continuous map (saliency) or the mask (SOD);
    `fixations` a file of fixations (.mat or a binary image) or `points` given inline (OSIE)."""

    name: str
    image: Path
    target: Path | None = None
    fixations: Path | None = None
    points: np.ndarray | None = None


@dataclass(frozen=True)
class Layout:
    """A dataset folder of one format: its splits (train, val, test as present), which of them have
    ground truth, and what a user should know about how it is read."""

    format: str
    task: str  # "saliency", "sod" or "segmentation"
    root: Path
    splits: dict[str, list[Item]]
    labelled: frozenset[str]
    notes: tuple[str, ...] = ()
    fixation_threshold: int = 0  # a fixation image's pixels above this are fixated
    graded_masks: bool = False  # masks are fractions of annotators, thresholded at 128
    map_sigma: float | None = None  # maps made from fixations (OSIE): sigma as a fraction of the width
    classes: tuple[str, ...] = ()  # segmentation: the class names, id = index
    label_ids: tuple[int, ...] | None = None  # segmentation: the class id of each file value (Cityscapes' ids)
    label_field: str | None = None  # segmentation: the field of a .mat label file (dots into structs)

    def items(self, which: str) -> list[Item]:
        if which not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"{self.format} dataset {self.root} has no {which} split (it has: {have})")
        return self.splits[which]


@dataclass(frozen=True)
class _Format:
    name: str
    task: str
    marks: tuple[str, ...]  # paths (relative to the root) that tell the format
    find: Callable[[Path, int], Layout]  # (root, seed of the drawn validation split)


def _images(folder: Path, what: str, root: Path, fmt: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{fmt} dataset {root}: missing folder {folder.relative_to(root)} ({what})")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DataError(f"{fmt} dataset {root}: no .jpg/.png images in {folder.relative_to(root)}")
    return found


def _examples(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _matched(root: Path, fmt: str, images: list[Path], lookups: dict[str, Callable[[Path], Path]]) -> list[dict]:
    """For each image, the path each lookup gives, every one of which must exist."""
    rows, missing = [], []
    for img in images:
        paths = {kind: look(img) for kind, look in lookups.items()}
        absent = [kind for kind, p in paths.items() if not p.is_file()]
        if absent:
            missing.append(f"{img.name} ({', '.join(absent)})")
        rows.append(paths)
    if missing:
        where = images[0].parent.relative_to(root)
        raise DataError(
            f"{fmt} dataset {root}: {len(missing)} of {len(images)} images in {where} have no ground truth file: "
            f"{_examples(missing)}"
        )
    return rows


def seeded_split(items: list[Item], seed: int = 0, fraction: float = VAL_FRACTION) -> tuple[list[Item], list[Item]]:
    """(train, val): `fraction` of the items (at least one) drawn with `seed`, each kept in order."""
    if len(items) < 2:
        raise DataError(f"{len(items)} labelled image(s): a train and a validation split need at least 2")
    n_val = max(1, round(len(items) * fraction))
    order = np.random.default_rng(seed).permutation(len(items))
    val = set(order[:n_val].tolist())
    return [it for i, it in enumerate(items) if i not in val], [it for i, it in enumerate(items) if i in val]


def _stem_lookup(folder: Path, suffixes: tuple[str, ...]) -> Callable[[Path], Path]:
    def look(img: Path) -> Path:
        for suffix in suffixes:
            if (folder / f"{img.stem}{suffix}").is_file():
                return folder / f"{img.stem}{suffix}"
        return folder / f"{img.stem}{suffixes[0]}"

    return look


# ---- saliency ----------------------------------------------------------------------------------
def _salicon(root: Path, seed: int) -> Layout:
    splits, labelled = {}, set()
    for which in ("train", "val"):
        if not (root / "images" / which).is_dir():
            raise DataError(f"SALICON dataset {root}: missing split images/{which} (train and val are needed)")
    for which in ("train", "val", "test"):
        if not (root / "images" / which).is_dir():
            continue
        images = _images(root / "images" / which, "stimuli", root, "SALICON")
        if which == "test" and not (root / "maps" / "test").is_dir():
            splits[which] = [Item(p.stem, p) for p in images]
            continue
        for kind in ("maps", "fixations"):
            if not (root / kind / which).is_dir():
                raise DataError(f"SALICON dataset {root}: missing folder {kind}/{which} for images/{which}")
        rows = _matched(
            root,
            "SALICON",
            images,
            {
                "map": _stem_lookup(root / "maps" / which, (".png", ".jpg", ".jpeg")),
                "fixations": _stem_lookup(root / "fixations" / which, (".mat", ".png")),
            },
        )
        splits[which] = [Item(p.stem, p, r["map"], r["fixations"]) for p, r in zip(images, rows, strict=True)]
        labelled.add(which)
    return Layout("SALICON", "saliency", root, splits, frozenset(labelled))


def _mit1003(root: Path, seed: int) -> Layout:
    images = _images(root / "ALLSTIMULI", "stimuli", root, "MIT1003")
    maps = root / "ALLFIXATIONMAPS"
    rows = _matched(
        root,
        "MIT1003",
        images,
        {"map": lambda p: maps / f"{p.stem}_fixMap.jpg", "fixations": lambda p: maps / f"{p.stem}_fixPts.jpg"},
    )
    items = [Item(p.stem, p, r["map"], r["fixations"]) for p, r in zip(images, rows, strict=True)]
    train, val = seeded_split(items, seed)
    return Layout(
        "MIT1003", "saliency", root, {"train": train, "val": val}, frozenset({"train", "val"}),
        notes=(f"no official split: validation is a seeded {VAL_FRACTION:.0%} of the images",),
        fixation_threshold=127,
    )  # fmt: skip


def _cat2000(root: Path, seed: int) -> Layout:
    base = root / "trainSet" / "Stimuli"
    categories = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not categories:
        raise DataError(f"CAT2000 dataset {root}: no category folders in trainSet/Stimuli")
    items = []
    for cat in categories:
        images = _images(cat, "stimuli", root, "CAT2000")
        rows = _matched(
            root,
            "CAT2000",
            images,
            {
                "map": _stem_lookup(root / "trainSet" / "FIXATIONMAPS" / cat.name, (".jpg", ".png")),
                "fixations": lambda p, c=cat.name: root / "trainSet" / "FIXATIONLOCS" / c / f"{p.stem}.mat",
            },
        )
        items += [Item(f"{cat.name}/{p.stem}", p, r["map"], r["fixations"]) for p, r in zip(images, rows, strict=True)]
    train, val = seeded_split(items, seed)
    splits = {"train": train, "val": val}
    test = root / "testSet" / "Stimuli"
    if test.is_dir():
        splits["test"] = [
            Item(f"{c.name}/{p.stem}", p)
            for c in sorted(test.iterdir())
            if c.is_dir()
            for p in _images(c, "", root, "CAT2000")
        ]
    return Layout(
        "CAT2000", "saliency", root, splits, frozenset({"train", "val"}),
        notes=(f"validation is a seeded {VAL_FRACTION:.0%} of trainSet (the test set has no ground truth)",),
    )  # fmt: skip


def _osie(root: Path, seed: int) -> Layout:
    from hwnas.data.fixations import read_osie

    images = _images(root / "data" / "stimuli", "stimuli", root, "OSIE")
    by_name = read_osie(root / "data" / "eye" / "fixations.mat")
    missing = [p.name for p in images if p.name not in by_name]
    if missing:
        raise DataError(f"OSIE dataset {root}: data/eye/fixations.mat has no fixations for {_examples(missing)}")
    items = [Item(p.stem, p, points=by_name[p.name]) for p in images]
    train, val = seeded_split(items, seed)
    return Layout(
        "OSIE", "saliency", root, {"train": train, "val": val}, frozenset({"train", "val"}),
        notes=(
            f"no official split: validation is a seeded {VAL_FRACTION:.0%} of the images",
            f"OSIE ships no maps: each is its fixations blurred by a Gaussian of sigma {OSIE_SIGMA} x the image width",
        ),
        map_sigma=OSIE_SIGMA,
    )  # fmt: skip


# ---- salient objects ---------------------------------------------------------------------------
def _pairs(root: Path, fmt: str, images: Path, masks: Path) -> list[Item]:
    if not masks.is_dir():
        raise DataError(f"{fmt} dataset {root}: missing folder {masks.relative_to(root)} (masks)")
    found = _images(images, "images", root, fmt)
    rows = _matched(root, fmt, found, {"mask": _stem_lookup(masks, (".png", ".jpg", ".bmp"))})
    return [Item(p.stem, p, r["mask"]) for p, r in zip(found, rows, strict=True)]


def _duts(root: Path, seed: int) -> Layout:
    splits, notes = {}, []
    if (root / "DUTS-TE-Image").is_dir():  # the DUTS-TE folder itself
        splits["test"] = _pairs(root, "DUTS", root / "DUTS-TE-Image", root / "DUTS-TE-Mask")
    else:
        if (root / "DUTS-TR").is_dir():
            tr = root / "DUTS-TR"
            train, val = seeded_split(_pairs(root, "DUTS", tr / "DUTS-TR-Image", tr / "DUTS-TR-Mask"), seed)
            splits.update(train=train, val=val)
            notes.append(f"validation is a seeded {VAL_FRACTION:.0%} of DUTS-TR; DUTS-TE is the test split")
        if (root / "DUTS-TE").is_dir():
            te = root / "DUTS-TE"
            splits["test"] = _pairs(root, "DUTS", te / "DUTS-TE-Image", te / "DUTS-TE-Mask")
    labelled = set(splits)
    return Layout("DUTS", "sod", root, splits, frozenset(labelled), tuple(notes))


def _test_set(fmt: str, images: str, masks: str, *, graded: bool = False) -> Callable[[Path, int], Layout]:
    def find(root: Path, seed: int) -> Layout:
        notes = ("a test set only: train on DUTS-TR",)
        if graded:
            notes += ("graded masks (the fraction of annotators) are thresholded at 128",)
        items = _pairs(root, fmt, root / images, root / masks)
        return Layout(fmt, "sod", root, {"test": items}, frozenset({"test"}), notes, graded_masks=graded)

    return find


# ---- semantic segmentation ---------------------------------------------------------------------
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
# cityscapesScripts `helpers/labels.py`: the trainId of each label id 0..33 (255: not evaluated)
CITYSCAPES_TRAIN_IDS = (
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255,
    5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18,
)  # fmt: skip
CITYSCAPES_IMAGE, CITYSCAPES_LABEL = "_leftImg8bit", "_gtFine_labelIds"


def _cities(root: Path, split: Path) -> list[Path]:
    cities = sorted(p for p in split.iterdir() if p.is_dir())
    if not cities:
        raise DataError(f"Cityscapes dataset {root}: no city folders in {split.relative_to(root)}")
    return cities


def _city_items(root: Path, city: Path, labels: Path | None) -> list[Item]:
    images = [p for p in _images(city, "images", root, "Cityscapes") if p.stem.endswith(CITYSCAPES_IMAGE)]
    if not images:
        raise DataError(f"Cityscapes dataset {root}: no *{CITYSCAPES_IMAGE}.png images in {city.relative_to(root)}")
    name = lambda p: f"{city.name}/{p.stem.removesuffix(CITYSCAPES_IMAGE)}"  # noqa: E731
    if labels is None:
        return [Item(name(p), p) for p in images]
    if not labels.is_dir():
        raise DataError(
            f"Cityscapes dataset {root}: missing folder {labels.relative_to(root)} "
            f"(the labels of {city.relative_to(root)})"
        )
    look = lambda p: labels / f"{p.stem.removesuffix(CITYSCAPES_IMAGE)}{CITYSCAPES_LABEL}.png"  # noqa: E731
    rows = _matched(root, "Cityscapes", images, {"labels": look})
    return [Item(name(p), p, r["labels"]) for p, r in zip(images, rows, strict=True)]


def _cityscapes(root: Path, seed: int) -> Layout:
    splits = {}
    for which in ("train", "val", "test"):
        folder = root / "leftImg8bit" / which
        if not folder.is_dir():
            if which == "test":
                continue
            raise DataError(f"Cityscapes dataset {root}: missing split leftImg8bit/{which} (train and val are needed)")
        labelled = which != "test"
        splits[which] = [
            item
            for city in _cities(root, folder)
            for item in _city_items(root, city, root / "gtFine" / which / city.name if labelled else None)
        ]
    return Layout(
        "Cityscapes", "segmentation", root, splits, frozenset({"train", "val"}),
        notes=("label ids mapped to the 19 train ids (cityscapesScripts); the test split's labels are withheld",),
        classes=CITYSCAPES_CLASSES, label_ids=CITYSCAPES_TRAIN_IDS,
    )  # fmt: skip


def _name_list(root: Path, path: Path, fmt: str) -> list[str]:
    """The image names of a split list (one per line, blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"{fmt} dataset {root}: missing split list {path.relative_to(root)}")
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{fmt} dataset {root}: split list {path.relative_to(root)} names no images")
    return names


def _listed(root: Path, fmt: str, names: list[str], image: Callable[[str], Path], label: Callable[[str], Path]):
    """An item per listed name, its image and label files present (one line naming those missing)."""
    missing = [n for n in names if not image(n).is_file() or not label(n).is_file()]
    if missing:
        raise DataError(
            f"{fmt} dataset {root}: {len(missing)} of {len(names)} listed images have no image or label file: "
            f"{_examples(missing)}"
        )
    return [Item(n, image(n), label(n)) for n in names]


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC, SBD = Path("VOCdevkit/VOC2012"), Path("benchmark_RELEASE/dataset")


def _voc(root: Path, seed: int) -> Layout:
    voc, sbd, fmt = root / VOC, root / SBD, "PASCAL VOC"
    lists = voc / "ImageSets" / "Segmentation"
    train, val = (_name_list(root, lists / f"{which}.txt", fmt) for which in ("train", "val"))
    notes = ["palette indices are the 21 classes; 255 (object outlines) is ignored"]
    if sbd.is_dir():
        extra = [n for which in ("train", "val") for n in _name_list(root, sbd / f"{which}.txt", fmt)]
        train = sorted((set(train) | set(extra)) - set(val))
        notes.append(f"train_aug: VOC train and SBD train and val, less VOC val ({len(train)} images)")
    else:
        notes.append("VOC's train list only (put SBD's benchmark_RELEASE beside VOCdevkit for train_aug)")

    def label(name: str) -> Path:
        png = voc / "SegmentationClass" / f"{name}.png"
        return png if png.is_file() else sbd / "cls" / f"{name}.mat"

    image = lambda n: voc / "JPEGImages" / f"{n}.jpg"  # noqa: E731
    splits = {"train": _listed(root, fmt, train, image, label), "val": _listed(root, fmt, val, image, label)}
    return Layout(
        fmt, "segmentation", root, splits, frozenset({"train", "val"}), tuple(notes), classes=VOC_CLASSES,
        label_field="GTcls.Segmentation",
    )  # fmt: skip


# COCO-Stuff's label ids 1..182 (the deeplab/cocostuff `labels.txt`): things 1..91, stuff 92..182;
# the 11 thing ids COCO never annotated are left out, giving the 171 classes benchmarks use
COCO_STUFF_UNUSED = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet",
    "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other",
    "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other",
    "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind",
    "window-other", "wood",
)  # fmt: skip
COCO_STUFF_IDS = tuple(  # the class id of each label id 0..182 (0 unlabeled and the unused ids: 255)
    255 if i == 0 or i in COCO_STUFF_UNUSED else i - 1 - sum(u < i for u in COCO_STUFF_UNUSED) for i in range(183)
)


def _coco_stuff(root: Path, seed: int) -> Layout:
    fmt = "COCO-Stuff-10K"
    image = lambda n: root / "images" / f"{n}.jpg"  # noqa: E731
    label = lambda n: root / "annotations" / f"{n}.mat"  # noqa: E731
    splits = {
        split: _listed(root, fmt, _name_list(root, root / "imageLists" / f"{which}.txt", fmt), image, label)
        for split, which in (("train", "train"), ("val", "test"))
    }
    return Layout(
        fmt, "segmentation", root, splits, frozenset({"train", "val"}),
        notes=("171 classes (the 11 thing ids COCO never annotated left out), unlabeled ignored; "
               "the test list is the validation split",),
        classes=COCO_STUFF_CLASSES, label_ids=COCO_STUFF_IDS, label_field="S",
    )  # fmt: skip


def read_class_list(path: Path, root: Path) -> tuple[str, ...]:
    """The class names of a `classes.txt`, one per line, id = line number from 0."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class list {path}: {exc}") from None
    names = tuple(line.strip() for line in lines)
    while names and not names[-1]:
        names = names[:-1]
    if not names or any(not n for n in names) or len(set(names)) != len(names) or len(names) > 255:
        raise DataError(
            f"class list {path.relative_to(root)} must name 1 to 255 distinct classes, one per line with no blank "
            f"lines (line i is class id i; 255 is the ignore label)"
        )
    return names


def _images_masks(root: Path, seed: int) -> Layout:
    classes = read_class_list(root / "classes.txt", root)
    items = _pairs(root, "images+masks", root / "images", root / "masks")
    train, val = seeded_split(items, seed)
    return Layout(
        "images+masks", "segmentation", root, {"train": train, "val": val}, frozenset({"train", "val"}),
        notes=(f"{len(classes)} classes from classes.txt; validation is a seeded {VAL_FRACTION:.0%} of the images",),
        classes=classes,
    )  # fmt: skip


FORMATS = (
    _Format("SALICON", "saliency", ("images", "maps"), _salicon),
    _Format("MIT1003", "saliency", ("ALLSTIMULI",), _mit1003),
    _Format("CAT2000", "saliency", ("trainSet/Stimuli",), _cat2000),
    _Format("OSIE", "saliency", ("data/stimuli", "data/eye"), _osie),
    _Format("DUTS", "sod", ("DUTS-TR",), _duts),
    _Format("DUTS", "sod", ("DUTS-TE",), _duts),
    _Format("DUTS", "sod", ("DUTS-TE-Image",), _duts),
    _Format("ECSSD", "sod", ("images", "ground_truth_mask"), _test_set("ECSSD", "images", "ground_truth_mask")),
    _Format("HKU-IS", "sod", ("imgs", "gt"), _test_set("HKU-IS", "imgs", "gt")),
    _Format(
        "PASCAL-S",
        "sod",
        ("datasets/imgs/pascal",),
        _test_set("PASCAL-S", "datasets/imgs/pascal", "datasets/masks/pascal", graded=True),
    ),  # fmt: skip
    _Format("DUT-OMRON", "sod", ("DUT-OMRON-image",), _test_set("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG")),
    _Format("Cityscapes", "segmentation", ("leftImg8bit",), _cityscapes),
    _Format("PASCAL VOC", "segmentation", (str(VOC / "SegmentationClass"),), _voc),
    _Format("COCO-Stuff-10K", "segmentation", ("images", "annotations", "imageLists"), _coco_stuff),
    _Format("images+masks", "segmentation", ("images", "masks", "classes.txt"), _images_masks),
)
KNOWN = (
    "SALICON, MIT1003, CAT2000, OSIE (saliency); DUTS, ECSSD, HKU-IS, PASCAL-S, DUT-OMRON (sod); "
    "Cityscapes, PASCAL VOC (with SBD), COCO-Stuff-10K, images+masks with classes.txt (segmentation)"
)


def _format_of(root: Path) -> _Format | None:
    for fmt in FORMATS:
        if all((root / mark).exists() for mark in fmt.marks):
            return fmt
    return None


def detect(root: str | Path, *, seed: int = 0) -> Layout:
    """The layout of the dataset at `root` (a drawn validation split drawn with `seed`); a
    `DataError` naming the formats known if none fits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    fmt = _format_of(root)
    if fmt is None:
        inside = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
        raise DataError(f"no dataset format found in {root} (it holds: {inside}); known formats: {KNOWN}")
    return fmt.find(root, seed)


def find_all(root: str | Path, *, seed: int = 0) -> list[Layout]:
    """The dataset at `root`, or, for a folder of datasets, each of its sub-folders that is one."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if _format_of(root) is not None:
        return [detect(root, seed=seed)]
    found = [detect(p, seed=seed) for p in sorted(root.iterdir()) if p.is_dir() and _format_of(p) is not None]
    if not found:
        detect(root)  # raises with the formats known
    return found


__all__ = [
    "CITYSCAPES_CLASSES", "CITYSCAPES_TRAIN_IDS", "FORMATS", "KNOWN", "Item", "Layout", "detect", "find_all",
    "read_class_list", "seeded_split",
]  # fmt: skip
