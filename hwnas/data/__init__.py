"""Datasets for training and scoring supernets: `load_data("synthetic" | "digits" | PATH, task=...)`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from hwnas.data.split import DataError, DataSet, Split
from hwnas.head import base_task

__all__ = ["DataError", "DataSet", "Split", "load_data", "SOURCES"]

SOURCES = {"synthetic": ("saliency", "sod"), "digits": ("classification",)}  # built-in source -> its tasks


def load_data(
    source: str, *, task: str, size: tuple[int, int], seed: int = 0, train_size: int = 512, val_size: int = 128
) -> DataSet:
    """A `DataSet` at (height, width) `size`.

    source: "synthetic" (procedural saliency or SOD scenes, `train_size` + `val_size` of them, and
    as many as `val_size` for the test split), "digits" (scikit-learn digits, classification) or the
    path of a folder: SALICON layout for saliency (its test split: images/test, maps/test,
    fixations/test), DUTS layout for sod (train and validation from DUTS-TR, test DUTS-TE).

    A SOD variant ("sod/unet", "sod+focus", ...) is served as "sod"; the `DataSet` keeps `task` as given.
    """
    base = base_task(task)
    if source in SOURCES:
        if base not in SOURCES[source]:
            raise DataError(f"data '{source}' is for the {' or '.join(SOURCES[source])} task, not {task}")
        if source == "synthetic":
            if base == "sod":
                from hwnas.data.sod import synthetic_sod as make
            else:
                from hwnas.data.synthetic import synthetic_saliency as make

            train = make(train_size, size=size, seed=seed)
            val = make(val_size, size=size, seed=seed + 1_000_003)
            test = partial(make, val_size, size=size, seed=seed + 2_000_003)
            return DataSet(name="synthetic", task=task, train=train, val=val, make_test=test)
        from hwnas.data.digits import digits

        train, val, test = digits(size, seed)
        return DataSet(name="digits", task=task, train=train, val=val, num_classes=10, make_test=lambda: test)
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"data '{source}' is neither a built-in set ({', '.join(SOURCES)}) nor an existing folder")
    if base == "sod":
        from hwnas.data.sod import read_duts

        train, val, test = read_duts(root, size, seed=seed)
        return DataSet(name=root.name, task=task, train=train, val=val, make_test=test)
    if task != "saliency":
        raise DataError(f"a data folder is read in the SALICON layout, which is for the saliency task, not {task}")
    from hwnas.data.saliency import read_split

    def test() -> Split:
        if not (root / "images" / "test").is_dir():
            raise DataError(f"saliency dataset {root} has no test split (images/test, maps/test, fixations/test)")
        return read_split(root, "test", size)

    train, val = read_split(root, "train", size), read_split(root, "val", size)
    return DataSet(name=root.name, task=task, train=train, val=val, make_test=test)
