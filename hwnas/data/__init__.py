"""Datasets for training and scoring supernets: `load_data("synthetic" | "digits" | PATH, task=...)`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from hwnas.data.split import DataError, DataSet, Split, Step
from hwnas.space.tasks import base_task

__all__ = ["DataError", "DataSet", "Split", "Step", "load_data", "load_folder", "read_folder_split", "SOURCES"]

# built-in source -> its tasks
SOURCES = {"synthetic": ("saliency", "sod", "segmentation"), "digits": ("classification",)}


def load_data(
    source: str,
    *,
    task: str,
    size: tuple[int, int],
    seed: int = 0,
    train_size: int = 512,
    val_size: int = 128,
    stream: bool = True,
) -> DataSet:
    """A `DataSet` at (height, width) `size`.

    source: "synthetic" (procedural saliency, SOD or segmentation scenes, `train_size` + `val_size` of them, and
    as many as `val_size` for the test split), "digits" (scikit-learn digits, classification) or the
    path of a dataset folder in a format users download (`hwnas.data.layout`: SALICON, MIT1003,
    CAT2000, OSIE for saliency; DUTS for sod: train and validation from DUTS-TR, test DUTS-TE;
    Cityscapes or images + masks for segmentation).

    A folder's splits are streamed from disk unless `stream` is false (`load_folder`); the built-in
    sets are made in memory. A SOD variant ("sod/unet", "sod+focus", ...) is served as "sod"; the
    `DataSet` keeps `task` as given.
    """
    base = base_task(task)
    if source in SOURCES:
        if base not in SOURCES[source]:
            *others, last = SOURCES[source]
            tasks = f"{', '.join(others)} or {last}" if others else last
            raise DataError(f"data '{source}' is for the {tasks} task, not {task}")
        if source == "synthetic":
            classes = ()
            if base == "sod":
                from hwnas.data.sod import synthetic_sod as make
            elif base == "segmentation":
                from hwnas.data.segmentation import SYNTHETIC_CLASSES as classes
                from hwnas.data.segmentation import synthetic_segmentation as make
            else:
                from hwnas.data.synthetic import synthetic_saliency as make

            train = make(train_size, size=size, seed=seed)
            val = make(val_size, size=size, seed=seed + 1_000_003)
            test = partial(make, val_size, size=size, seed=seed + 2_000_003)
            return DataSet(
                name="synthetic", task=task, train=train, val=val, make_test=test,
                num_classes=max(len(classes), 1), class_names=classes,
            )  # fmt: skip
        from hwnas.data.digits import digits

        train, val, test = digits(size, seed)
        return DataSet(name="digits", task=task, train=train, val=val, num_classes=10, make_test=lambda: test)
    return load_folder(Path(source), task=task, size=size, seed=seed, stream=stream)


def load_folder(
    root: Path,
    *,
    task: str,
    size: tuple[int, int],
    seed: int = 0,
    train_limit: int | None = None,
    stream: bool = True,
) -> DataSet:
    """A `DataSet` of the dataset folder at `root` (any format of `hwnas.data.layout`) at (height,
    width) `size`; its test split is read when first asked for (a `DataError` if it has none).
    `train_limit` reads only the first so many training images (enough to re-estimate BN statistics
    for scoring); IG's centre bias then still comes from every training fixation. Its splits are
    read from disk as they are used (`stream`, `hwnas.data.stream.FolderSplit`) or whole into memory
    now (`stream=False`, faster for a set that fits); the results are the same."""
    from hwnas.data.layout import detect

    if not root.is_dir():
        raise DataError(f"data '{root}' is neither a built-in set ({', '.join(SOURCES)}) nor an existing folder")
    layout = detect(root, seed=seed)
    base = base_task(task)
    if layout.task != base:
        raise DataError(f"{root} is a {layout.format} dataset, for the {layout.task} task, not {task}")
    for which in ("train", "val"):
        if which not in layout.labelled:
            raise DataError(
                f"{layout.format} dataset {root} has no labelled {which} split; "
                + ("train on DUTS-TR" if base == "sod" else "it cannot be trained on")
            )

    def read(which: str, limit: int | None = None) -> Split:
        return read_folder_split(layout, which, size, limit=limit, stream=stream)

    def test() -> Split:
        return read("test")

    bias = None
    if train_limit is not None and layout.task == "saliency":  # IG's baseline: every training fixation
        from hwnas.data.metrics.saliency import CenterBias
        from hwnas.data.saliency import fixations_only

        bias = CenterBias.from_points(*fixations_only(layout, "train"))
    return DataSet(
        name=root.name, task=task, train=read("train", train_limit), val=read("val"), make_test=test, bias=bias,
        num_classes=max(len(layout.classes), 1), class_names=layout.classes,
    )  # fmt: skip


def read_folder_split(layout, which: str, size: tuple[int, int], *, limit: int | None = None, stream: bool = True):
    """The `which` split of `layout` at (height, width) `size`: a `FolderSplit` read from disk as it
    is used (`stream`), or a `Split` read whole into memory now; the same rows either way."""
    items = layout.items(which)[:limit] if limit else layout.items(which)
    if stream:
        from hwnas.data.stream import FolderSplit, item_reader

        return FolderSplit.read(item_reader(layout, which), items, stored=size, labelled=which in layout.labelled)
    from hwnas.data.split import read_split
    from hwnas.data.stream import item_reader

    reader = item_reader(layout, which)
    return read_split(items, size, reader.load, reader.fields)
