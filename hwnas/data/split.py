"""`Split` and `DataSet`: in-memory image sets at a chosen resolution.

Images are kept as uint8 (N, 3, H, W) and normalised per batch; saliency maps as uint8 (N, 1, H, W),
fixations as bool (N, 1, H, W), SOD masks as uint8 0/255 (N, 1, H, W), class labels as int64 (N,),
segmentation label maps ("seg") as uint8 class ids (N, 1, H, W), 255 ignored, resized by nearest neighbour.
A `DataSet` holds a train and a validation split of one task and hands out copies resized to each
resolution a supernet asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.errors import HwnasError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_ROWS = 256  # images resized at a time


class DataError(HwnasError):
    """A dataset folder or source is missing, incomplete or inconsistent."""


def resize_fixations(fix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Move every fixation of a bool (N, 1, H, W) map to its scaled pixel in an (h, w) map."""
    n, _, h0, w0 = fix.shape
    h, w = size
    out = torch.zeros((n, 1, h, w), dtype=torch.bool)
    idx = fix.nonzero(as_tuple=True)
    ys = torch.clamp((idx[2].double() + 0.5) * h / h0, max=h - 1).long()
    xs = torch.clamp((idx[3].double() + 0.5) * w / w0, max=w - 1).long()
    out[idx[0], 0, ys, xs] = True
    return out


def resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a uint8 (N, C, H, W) tensor, `RESIZE_ROWS`
    images at a time (the float copy of a whole split would need four times its memory)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = torch.empty((*x.shape[:-2], *size), dtype=torch.uint8)
    for start in range(0, len(x), RESIZE_ROWS):
        y = F.interpolate(x[start : start + RESIZE_ROWS].float(), size=size, mode="bilinear", align_corners=False,
                          antialias=True)  # fmt: skip
        out[start : start + RESIZE_ROWS] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of uint8 (N, 1, H, W) class ids (a label is never blended)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels.float(), size=size, mode="nearest-exact").to(torch.uint8)


def read_split(
    items: list,
    size: tuple[int, int],
    load: Callable,
    fields: Callable,
    *,
    progress: Callable[[int], None] | None = None,
) -> Split:
    """A `Split` of dataset items at (height, width) `size`, all in memory: `load(item)` gives an
    image (uint8 H x W x 3) and its original-size `Truth`, `fields(truth, size)` the truth's stored
    fields, each (1, h, w), at `size` (none for an image without ground truth); images are resized
    bilinearly. `hwnas.data.stream.FolderSplit` reads the same items one at a time with the same two
    functions."""
    h, w = size
    images = torch.empty((len(items), 3, h, w), dtype=torch.uint8)
    stored: dict[str, torch.Tensor] = {}
    truths = []
    for i, item in enumerate(items):
        img, truth = load(item)
        images[i] = image_at(img, size)
        for name, value in fields(truth, size).items():
            if name not in stored:
                stored[name] = torch.empty((len(items), *value.shape), dtype=value.dtype)
            stored[name][i] = value
        truths.append(truth)
        if progress is not None:
            progress(1)
    return Split(images, stored, truths=tuple(truths))


def image_at(img: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A uint8 H x W x 3 image as a uint8 (3, h, w) tensor at (height, width) `size`."""
    return resize_uint8(torch.from_numpy(img).permute(2, 0, 1)[None], size)[0]


def resize_rows(rows: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Stacked rows (uint8 "image" (N, 3, H, W), if there, and stored fields) at (height, width)."""
    out = resize_fields({k: v for k, v in rows.items() if k != "image"}, size)
    return {"image": resize_uint8(rows["image"], size), **out} if "image" in rows else out


def resize_fields(fields: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Stored (N, 1, H, W) fields at (height, width) `size`: fixations moved to their scaled pixels,
    class ids by nearest neighbour, maps and masks bilinearly; per-image values (labels) as they are."""
    out = {}
    for name, value in fields.items():
        if name == "fix":
            out[name] = resize_fixations(value, size)
        elif name == "seg":
            out[name] = resize_labels(value, size)
        elif value.dim() == 4:
            out[name] = resize_uint8(value, size)
        else:
            out[name] = value
    return out


SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # MoSegNAS's random scales (Section IV-C, after BiSeNet)


def scaled_crop(
    row: dict[str, torch.Tensor], rng: np.random.Generator, *, crop: tuple[int, int] | None = None, scale: bool = True
) -> dict[str, torch.Tensor]:
    """One stored row ("image" (3, H, W) and "seg" (1, H, W)) scaled by a random factor of `SCALES`
    (with `scale`; bilinear, nearest for class ids) and cropped to (height, width) `crop` (default
    (H, W)) at a random place that never leaves the scaled image; a scaled image smaller than the
    crop is padded, with 0 and the ignore label 255 (MoSegNAS's training, as BiSeNet's and mmseg's)."""
    if set(row) - {"image", "seg"}:
        raise HwnasError(
            f"scale-and-crop augments segmentation rows only, not {', '.join(sorted(set(row) - {'image', 'seg'}))}"
        )
    h, w = crop or tuple(row["image"].shape[-2:])
    sh, sw = row["image"].shape[-2:]
    factor = SCALES[int(rng.integers(len(SCALES)))] if scale else 1.0
    size = (max(round(sh * factor), 1), max(round(sw * factor), 1))
    image, seg = resize_uint8(row["image"][None], size)[0], resize_labels(row["seg"][None], size)[0]
    top, left = int(rng.integers(0, max(size[0] - h, 0) + 1)), int(rng.integers(0, max(size[1] - w, 0) + 1))
    out = {"image": torch.zeros((3, h, w), dtype=torch.uint8), "seg": torch.full((1, h, w), 255, dtype=torch.uint8)}
    ch, cw = min(h, size[0]), min(w, size[1])
    out["image"][:, :ch, :cw] = image[:, top : top + ch, left : left + cw]
    out["seg"][:, :ch, :cw] = seg[:, top : top + ch, left : left + cw]
    return out


def scaled_size(n: int, factor: float, multiple: int = 1) -> int:
    """`n` pixels scaled by `factor`, rounded to a multiple of `multiple` (at least one of it)."""
    return max(multiple, round(n * factor / multiple) * multiple)


def training_size(resolution: tuple[int, int], stored: tuple[int, int], crop: tuple[int, int], multiple: int = 1):
    """(height, width) a subnet of (width, height) `resolution` trains at on a (height, width) `crop`
    of rows stored at `stored`: the crop at the subnet's scale (its resolution over the stored size),
    rounded to a multiple of `multiple` (BiSeNet's heads meet 1/8, 1/16 and 1/32 maps: 32)."""
    (w, h), (sh, sw), (ch, cw) = resolution, stored, crop
    return scaled_size(ch, h / sh, multiple), scaled_size(cw, w / sw, multiple)


@dataclass(frozen=True)
class Step:
    """One training step's data: its `rows` of the training split, the `resolutions` (width,
    height) its subnets run at, and, to scale (`scale`) and crop each row (`scaled_crop`), a
    `crop_seed`; `crop` (height, width) is a window smaller than the stored rows, and then each
    subnet trains on it at the subnet's scale (`training_size`, a multiple of `multiple`)."""

    rows: np.ndarray
    resolutions: list[tuple[int, int]]
    crop_seed: int | None = None
    crop: tuple[int, int] | None = None
    scale: bool = True
    multiple: int = 1

    def at_sizes(self, stored: dict[str, torch.Tensor]) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
        """The step's rows as stored (uint8, stacked), scaled and cropped where asked, each keyed by a
        resolution as (height, width): at that resolution, or with a `crop`, at `training_size`."""
        full = tuple(stored["image"].shape[-2:])
        crop = None if self.crop is None else (min(self.crop[0], full[0]), min(self.crop[1], full[1]))
        if self.crop_seed is not None:
            rows = [
                scaled_crop(
                    {k: v[j] for k, v in stored.items()}, np.random.default_rng([self.crop_seed, int(row)]),
                    crop=crop, scale=self.scale,
                )
                for j, row in enumerate(self.rows)
            ]  # fmt: skip
            stored = {k: torch.stack([r[k] for r in rows]) for k in stored}
        if crop is None:
            return {(h, w): resize_rows(stored, (h, w)) for w, h in self.resolutions}
        return {
            (h, w): resize_rows(stored, training_size((w, h), full, crop, self.multiple)) for w, h in self.resolutions
        }


@dataclass(frozen=True)
class Split:
    """One split: images plus `fields` ("map", "fix" for saliency; "mask" for SOD; "label" for
    classification; "seg" for segmentation) at one resolution, and, for a split read from a folder, each image's
    original-size ground truth (`truths`, `hwnas.data.truth.Truth`)."""

    images: torch.Tensor
    fields: dict[str, torch.Tensor]
    truths: tuple | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the stored images."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def labelled(self) -> bool:
        """Whether the split has ground truth (not, say, SALICON's test images)."""
        return bool(self.fields)

    def resized(self, size: tuple[int, int]) -> Split:
        """A copy at (height, width)."""
        if tuple(size) == self.size:
            return self
        rows = resize_rows({"image": self.images, **self.fields}, size)
        return Split(rows.pop("image"), rows, self.truths)

    def rows(self, index: np.ndarray | list[int] | slice) -> dict[str, torch.Tensor]:
        """The uint8 images ("image") and stored fields of the given rows."""
        if not isinstance(index, slice):
            index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return {"image": self.images[index], **{k: v[index] for k, v in self.fields.items()}}

    def subset(self, indices: np.ndarray | list[int]) -> Split:
        rows = np.asarray(indices, dtype=np.int64)
        index = torch.as_tensor(rows)
        truths = None if self.truths is None else tuple(self.truths[i] for i in rows)
        return Split(self.images[index], {k: v[index] for k, v in self.fields.items()}, truths)

    def __add__(self, other: Split) -> Split:
        """The rows of both splits (same size and fields)."""
        truths = None if self.truths is None or other.truths is None else self.truths + other.truths
        return Split(
            torch.cat([self.images, other.images]),
            {k: torch.cat([v, other.fields[k]]) for k, v in self.fields.items()},
            truths,
        )

    def ground_truth(self, *, original: bool = True) -> list:
        """Each image's ground truth: at its original size (the truths read with a folder's split; a
        split made at its size, synthetic or digits, has its stored fields as originals), or, with
        `original=False`, at the split's resolution (its stored fields)."""
        from hwnas.data.truth import stored_truths

        return list(self.truths) if original and self.truths is not None else stored_truths(self.fields)


@dataclass
class DataSet:
    """A named train/validation pair for one task, resizable to any resolution, with a held-out
    test split made on first use by `make_test` where the source has one."""

    name: str
    task: str
    train: Split
    val: Split
    num_classes: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    make_test: Callable[[], Split] | None = field(default=None, repr=False)
    bias: object | None = field(default=None, repr=False)  # a CenterBias of more training images than `train`
    class_names: tuple[str, ...] = ()  # segmentation: the name of each class id
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def test(self) -> Split:
        """The held-out test split (never used for training or for choosing)."""
        if "test" not in self._cache:
            if self.make_test is None:
                raise DataError(f"data '{self.name}' has no test split")
            self._cache["test"] = self.make_test()
        return self._cache["test"]

    def center_bias(self):
        """IG's baseline: the training split's fixations as a `CenterBias` (saliency only), cached;
        `bias` when given (the whole training split's, where `train` holds only a few images)."""
        if self.bias is not None:
            return self.bias
        if "center_bias" not in self._cache:
            from hwnas.data.metrics.saliency import CenterBias

            truths = self.train.ground_truth(original=True)
            self._cache["center_bias"] = CenterBias.from_points([t.points for t in truths], [t.size for t in truths])
        return self._cache["center_bias"]

    def scored_on_test(self) -> DataSet:
        """The same data with the test split in the validation split's place, for `evaluate`."""
        return DataSet(
            self.name, self.task, self.train, self.test, self.num_classes, self.mean, self.std, bias=self.bias,
            class_names=self.class_names,
        )  # fmt: skip

    def with_val_in_train(self) -> DataSet:
        """Train = train + validation (the validation split kept as is), as NATv2's phase 2 trains."""
        return DataSet(
            f"{self.name} train+val", self.task, self.train + self.val, self.val, self.num_classes, self.mean, self.std,
            class_names=self.class_names,
        )  # fmt: skip

    def split(self, which: str, resolution: tuple[int, int]) -> Split:
        """The `which` ("train", "val" or "test") split at `resolution` = (width, height), cached."""
        key = (which, tuple(resolution))
        if key not in self._cache:
            w, h = resolution
            self._cache[key] = getattr(self, which).resized((h, w))
        return self._cache[key]

    def batch(self, split: Split, indices: np.ndarray | list[int] | slice) -> dict[str, torch.Tensor]:
        """Float, normalised images and float targets for the given rows."""
        return self.normalised(split.rows(indices))

    def normalised(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rows as stored (uint8 images and fields) as a batch: float images normalised by the
        set's mean and std, maps in [0, 1], masks thresholded back to 0/1 (bilinear-resized 0/255)."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        out = {"image": (rows["image"].float() / 255 - mean) / std}
        for name, value in rows.items():
            if name == "map":
                out[name] = value.float() / 255
            elif name == "mask":
                out[name] = (value > 127).float()
            elif name != "image":
                out[name] = value.float() if name == "fix" else value
        return out

    def batches(self, split: Split, batch_size: int, *, pin: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """The whole split in order, `batch_size` rows at a time: sliced from memory, or read from
        disk by worker processes (`hwnas.data.stream.FolderSplit`, in pinned memory with `pin`)."""
        if isinstance(split, Split):
            for start in range(0, len(split), batch_size):
                yield self.batch(split, slice(start, start + batch_size))
            return
        for rows in split.loader(batch_size, pin=pin):
            yield self.normalised(rows)

    def training_batches(
        self, plan: list[Step], *, pin: bool = False
    ) -> Iterator[dict[tuple[int, int], dict[str, torch.Tensor]]]:
        """For each `Step` of `plan`, its training rows at each of its resolutions: from memory, or
        decoded once per row, scaled and cropped, and resized in worker processes for a split read
        from disk, ahead of the trainer (in pinned memory with `pin`, for a CUDA device)."""
        if isinstance(self.train, Split):
            for step in plan:
                at = step.at_sizes(self.train.rows(step.rows))
                yield {r: self.normalised(at[(r[1], r[0])]) for r in step.resolutions}
            return
        for step in self.train.steps(plan, pin=pin):
            yield {r: self.normalised(rows) for r, rows in step.items()}
