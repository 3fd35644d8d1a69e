"""Scoring subnets: a split's predictions and metrics (what training validates and the search
scores), and `hwnas evaluate` on whole datasets as the benchmarks score.

`evaluate(model, data, task, arch=...)` extracts a supernet's subnet, re-estimates its BN statistics
on training batches (`hwnas.train.bn.recalibrated_subnet`), predicts a split batch by batch and
scores each image as its batch arrives (`Predictions`: memory for a batch of predictions, not the
split's), at its resolution (what training and search compare, fast) or, with `original=True`, as
the benchmarks compute them: each prediction resized (bilinear) to its image's original size and scored on the
original fixations, map or mask (`hwnas.data.truth`). The head's eval blur (SalNAS) is part of the
model's output, so it is applied where the model applies it, at the output resolution, before the
resize.

`evaluate_checkpoint(checkpoint, arch, data, ...)` is `hwnas evaluate`: a supernet (with an arch) or
a subnet checkpoint on a dataset, a built-in one or a folder (`hwnas.data.layout`: one dataset, or a
folder of them, such as FocusNet's five SOD test sets side by side, scored one row each). A
supernet's subnet has its BN statistics re-estimated exactly as the search scored it (`bn_batches`
batches of 64 training images at its resolution); the training images (and IG's centre bias) come
from each dataset's own training split, or, for a test set, from the first dataset at the root that
has one, or from `bn_data`. By default every score is computed at each image's original size.
Saliency's IG is against the centre bias of all the training split's fixations.

Segmentation is scored single-scale by default; with `scales` (e.g. 0.75 to 1.75, as MoSegNAS's
multi-scale row in its Table II) each image also runs at those multiples of the subnet's input
size (a multiple of 32 where BiSeNet's heads decode) and the class probabilities, resized back
bilinearly, are averaged before scoring.

With `submission`, the predictions are also written as PNGs at each image's original size, named
after the image (`NAME.png`; CAT2000: `CATEGORY/NNN.png`), the form the SALICON and MIT/CAT2000
benchmarks take: the map min-max scaled to 0..255. The folder is written whole or not at all.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.data import SOURCES, DataError, DataSet, Split
from hwnas.data.split import scaled_size
from hwnas.errors import HwnasError
from hwnas.files import nan_to_none
from hwnas.process_group import init_distributed
from hwnas.space import Arch
from hwnas.space.signature import BISENET_STRIDE
from hwnas.space.tasks import base_task
from hwnas.torch_device import device_of, on_device, torch_device
from hwnas.train.bn import recalibrated_subnet
from hwnas.train.task import SaliencyTask, Task

SPLITS = ("val", "test")
BN_BATCH = 64  # images per BN-recalibration batch, as the search's `evaluate`

Progress = Callable[[str, int], Callable[[int], None]] | None  # (label, total) -> advance by n


class Predictions:
    """The task's prediction of each image of the `which` split at the net's resolution, one batch
    computed at a time as it is iterated (on the net's device; each image's prediction handed to
    the host), so that scoring as they come needs memory for a batch, not for the split. Iterate
    once; then `loss` is the split's mean loss (None for a split without ground truth, such as
    SALICON's test images).

    Under torchrun (`world` > 1) every rank iterates: batch b is computed by rank b % `world` on its
    own device, and rank 0 gathers each round of batches and yields every image in order (the
    other ranks yield nothing); rank 0's `loss` is the whole split's."""

    def __init__(self, net: nn.Module, data: DataSet, task: Task, which: str = "val", *, batch_size: int = 64,
                 progress: Callable[[int], None] | None = None, rank: int = 0, world: int = 1,
                 scales: tuple[float, ...] = (1.0,)):  # fmt: skip
        self.net, self.data, self.task, self.batch_size, self.progress = net, data, task, batch_size, progress
        self.split = data.split(which, net.arch.resolution)
        self.rank, self.world = rank, world
        self.scales = check_scales(scales, task.name)
        self.loss: float | None = None

    def __len__(self) -> int:
        return len(self.split)

    def __iter__(self) -> Iterator[torch.Tensor]:
        total = 0.0
        for predictions, loss in self._gathered() if self.world > 1 else self._computed(self.split):
            total += loss
            yield from predictions
            if self.progress is not None:
                self.progress(len(predictions))
        self.loss = total / len(self.split) if self.split.labelled and self.rank == 0 else None

    def _computed(self, split) -> Iterator[tuple[torch.Tensor, float]]:
        """Each batch of `split`: its predictions on the host and its summed loss (0 unlabelled)."""
        device = device_of(self.net)
        for batch in self.data.batches(split, self.batch_size, pin=device.type == "cuda"):
            with torch.no_grad():
                batch = on_device(batch, device)
                out = self.net(batch["image"])
                loss = (
                    float(self.task.loss(out, self.task.gt(batch), batch)) * len(batch["image"])
                    if split.labelled
                    else 0.0
                )
                prediction = self.task.prediction(out)
                if self.scales != (1.0,):
                    prediction = self._multi_scale(batch["image"], prediction)
                yield prediction.cpu(), loss  # scored on the host

    def _multi_scale(self, image: torch.Tensor, at_one: torch.Tensor) -> torch.Tensor:
        """The mean of the class probabilities at each of `scales` x the input size, each resized back."""
        size = tuple(image.shape[-2:])
        multiple = BISENET_STRIDE if getattr(self.net, "bisenet", False) else 1
        total = torch.zeros_like(at_one)
        for scale in self.scales:
            if scale == 1.0:
                total += at_one
                continue
            scaled = tuple(scaled_size(n, scale, multiple) for n in size)
            out = self.net(F.interpolate(image, size=scaled, mode="bilinear", align_corners=False))
            total += self.task.resize(self.task.prediction(out), size)
        return total / len(self.scales)

    def _gathered(self) -> Iterator[tuple[torch.Tensor, float]]:
        """This rank's batches computed here; on rank 0, every rank's, gathered round by round."""
        import torch.distributed as dist

        n, size = len(self.split), self.batch_size
        count = -(-n // size)
        mine = [i for b in range(self.rank, count, self.world) for i in range(b * size, min((b + 1) * size, n))]
        computed = self._computed(self.split.subset(mine)) if mine else iter(())
        for first in range(0, count, self.world):
            part = next(computed) if first + self.rank < count else None
            parts = [None] * self.world if self.rank == 0 else None
            dist.gather_object(part, parts, dst=0)
            for gathered in parts or []:
                if gathered is not None:
                    yield gathered


def check_scales(scales: tuple[float, ...], task: str) -> tuple[float, ...]:
    """Evaluation scales: positive, distinct; more than one for segmentation only."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not 0.25 <= s <= 4 for s in scales) or len(set(scales)) != len(scales):
        raise HwnasError(f"--scales must be distinct numbers from 0.25 to 4 (e.g. 0.75,1,1.25), got {list(scales)}")
    if scales != (1.0,) and base_task(task) != "segmentation":
        raise HwnasError(f"--scales averages segmentation's class probabilities over input sizes; the task is {task}")
    return scales


def evaluate(
    model: nn.Module,
    data: DataSet,
    task: Task,
    *,
    arch: Arch | None = None,
    bn_batches: int = 8,
    batch_size: int = 64,
    which: str = "val",
    original: bool = False,
    shuffle: str = "all",
    transform: Callable[[nn.Module], nn.Module] | None = None,
) -> dict[str, float]:
    """Loss and task metrics of `arch` (a supernet's subnet) or of a static subnet on a split.

    A supernet's subnet is extracted (the supernet is left untouched) and its BN statistics are
    re-estimated on the first `bn_batches` training batches of `BN_BATCH` images (once-for-all,
    AttentiveNAS); a static subnet is scored with its own statistics. The work runs on the model's
    device; `batch_size` (images per prediction batch) changes the speed, not the scores (beyond
    float rounding). Saliency's IG is against the training split's centre bias; `shuffle` picks
    sAUC's negatives (`hwnas.data.metrics.saliency.score_saliency`). `transform` turns the
    recalibrated subnet into what is scored (the search's simulated int8, `hwnas.nn.quantize`).
    """
    net = recalibrated_subnet(model, data, arch, bn_batches=bn_batches, batch_size=BN_BATCH)
    net = transform(net) if transform is not None else net
    predictions = Predictions(net, data, task, which, batch_size=batch_size)
    scores = score(task, data, predictions, which, resolution=net.arch.resolution, original=original, shuffle=shuffle)
    return {"loss": predictions.loss, **scores}  # scored as the batches came: the loss is known now


def score(
    task: Task,
    data: DataSet,
    predictions: torch.Tensor | Iterable[torch.Tensor],
    which: str = "val",
    *,
    resolution: tuple[int, int],
    original: bool = False,
    shuffle: str = "all",
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """The task's metrics of a split's predictions made at `resolution` (width, height): against
    each image's original-size ground truth (`original`), or against the split's fields at that
    resolution. `predictions` is a stacked tensor or any iterable of each image's (`Predictions`),
    read once, one image at a time."""
    if not getattr(data, which).labelled:
        raise DataError(f"the {which} split of '{data.name}' has no ground truth (images only): nothing to score")
    if original:
        truths = getattr(data, which).ground_truth(original=True)
    else:
        truths = data.split(which, resolution).ground_truth(original=False)
    context = {"baseline": data.center_bias(), "shuffle": shuffle} if isinstance(task, SaliencyTask) else {}
    return task.scores(predictions, truths, progress=progress, **context)


@dataclass(frozen=True)
class Row:
    """One dataset's scores (`scores` empty for a split without ground truth)."""

    dataset: str
    split: str
    images: int
    scores: dict[str, float]
    bn: str
    submission: Path | None = None


@dataclass(frozen=True)
class Evaluation:
    """What `hwnas evaluate` measured, and how."""

    checkpoint: Path
    arch: Arch
    task: str
    bn: str
    scored_at: str  # "original size" or the subnet's input resolution
    shuffle: str
    rows: list[Row]
    seconds: float
    notes: list[str] = field(default_factory=list)
    class_names: tuple[str, ...] = ()  # segmentation: the name of each class id (the `iou/<id>` scores)

    def to_dict(self) -> dict:
        """JSON-ready; a score that is not defined on the set (NaN, e.g. sAUC of one image) is null."""
        return {
            "checkpoint": str(self.checkpoint), "arch": str(self.arch), "task": self.task, "bn": self.bn,
            "scored_at": self.scored_at, "sauc_negatives": self.shuffle, "seconds": round(self.seconds, 1),
            "notes": self.notes, "class_names": list(self.class_names),
            "rows": [
                {"dataset": r.dataset, "split": r.split, "images": r.images, "bn": r.bn,
                 "scores": nan_to_none(r.scores),
                 "submission": None if r.submission is None else str(r.submission)}
                for r in self.rows
            ],
        }  # fmt: skip


def _check_inputs(which: str, shuffle: str, submission: Path | None) -> None:
    from hwnas.data.metrics.saliency import SHUFFLES

    if which not in SPLITS:
        raise HwnasError(f"--split must be one of {', '.join(SPLITS)}, not '{which}'")
    if shuffle not in SHUFFLES:
        raise HwnasError(f"--sauc must be one of {', '.join(SHUFFLES)}, not '{shuffle}'")
    if submission is not None:
        from hwnas.files import writable_file

        if submission.exists() and (not submission.is_dir() or any(submission.iterdir())):
            raise HwnasError(f"--submission folder {submission} exists and is not empty; pass a new folder")
        writable_file(submission, what="--submission folder")


def _folder_sets(
    root: Path, task: str, which: str, size: tuple[int, int], *, bn_images: int, seed: int, bn_data: str | None
) -> list[tuple[str, DataSet]]:
    """(name, DataSet whose `val` is the split to score) for each dataset at `root` with that split."""
    from hwnas.data import load_folder, read_folder_split
    from hwnas.data.layout import detect, find_all

    layouts = [lay for lay in find_all(root, seed=seed) if lay.task == base_task(task)]
    if not layouts:
        raise DataError(f"{root} holds no {base_task(task)} dataset; known formats: see `hwnas data check`")
    scored = [lay for lay in layouts if which in lay.splits]
    if not scored:
        have = ", ".join(f"{lay.format}: {', '.join(lay.splits)}" for lay in layouts)
        raise DataError(f"no dataset in {root} has a {which} split ({have})")
    shared = (
        [detect(bn_data, seed=seed)] if bn_data is not None else [lay for lay in layouts if "train" in lay.labelled]
    )
    trains: dict[Path, DataSet] = {}

    def train_of(lay) -> DataSet | None:
        """Its own training split, or (a test set) the first one at `root`, or `bn_data`'s."""
        source = lay if bn_data is None and "train" in lay.labelled else (shared[0] if shared else None)
        if source is not None and source.root not in trains:
            trains[source.root] = load_folder(source.root, task=task, size=size, seed=seed, train_limit=bn_images)
        return trains[source.root] if source is not None else None

    out = []
    for lay in scored:
        train_set = train_of(lay)
        own = train_set is not None and train_set is trains.get(lay.root)
        if own and which == "val":  # load_folder has read it already
            split = train_set.val
        else:
            split = read_folder_split(lay, which, size)
        train = train_set.train if train_set is not None else split
        bias = train_set.bias if train_set is not None else None
        name = train_set.name if train_set is not None else lay.format
        out.append((lay.format, DataSet(
            name=name, task=task, train=train, val=split, bias=bias, num_classes=max(len(lay.classes), 1),
            class_names=lay.classes,
        )))  # fmt: skip
    return out


def _submission_png(prediction: np.ndarray) -> np.ndarray:
    span = prediction.max() - prediction.min()
    scaled = (prediction - prediction.min()) / span if span > 0 else np.zeros_like(prediction)
    return np.round(scaled * 255).astype(np.uint8)


class Submission:
    """Each prediction at its image's original size as a grey PNG named after the image, written as
    it passes (`passing`, while it is scored) into a staged folder that `finish` makes `folder`."""

    def __init__(self, split: Split, folder: Path):
        self.truths, self.folder = split.ground_truth(original=True), folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))

    def passing(self, predictions: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        from PIL import Image

        from hwnas.train.task import at_truth_sizes

        for pred, truth in zip(predictions, self.truths, strict=True):
            target = self.staged / f"{truth.name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_submission_png(next(at_truth_sizes([pred], [truth])))).save(target)
            yield pred

    def finish(self) -> Path:
        from hwnas.files import atomic_replace_dir

        return atomic_replace_dir(self.staged, self.folder)

    def discard(self) -> None:
        """Nothing half-written: the staged maps go when scoring fails."""
        import shutil

        shutil.rmtree(self.staged, ignore_errors=True)


def write_submission(predictions: torch.Tensor | Iterable[torch.Tensor], split: Split, folder: Path) -> Path:
    """`Submission` of all of `predictions` at once: the folder written whole or not at all."""
    submission = Submission(split, folder)
    try:
        for _ in submission.passing(predictions):
            pass
    except BaseException:
        submission.discard()
        raise
    return submission.finish()


def evaluate_checkpoint(
    checkpoint: str | Path,
    arch: str | Path | Arch | None,
    data: str | None = None,
    *,
    which: str = "val",
    original: bool = True,
    shuffle: str = "all",
    submission: Path | None = None,
    bn_data: str | None = None,
    progress: Progress = None,
    device: str = "cpu",
    batch_size: int = BN_BATCH,
    scales: tuple[float, ...] = (1.0,),
) -> Evaluation | None:
    """Score `arch` of `checkpoint` on the `which` split of `data` (default: the data it trained on,
    when that is a built-in set), the network on `device` (a `--torch-device`), `batch_size` images
    per prediction batch; `scales`: segmentation's multi-scale inference (`Predictions`). Every
    problem with an input is an `HwnasError` raised before any model runs.

    Under torchrun every rank recalibrates the same subnet and predicts its share of the batches
    (`Predictions`); rank 0 scores, writes and returns the `Evaluation`, the others None."""
    from hwnas.nn.checkpoint import load
    from hwnas.train.source import bn_batches, checkpoint_data, resolve_arch
    from hwnas.train.task import make_task

    start = time.perf_counter()
    _check_inputs(which, shuffle, submission)
    if batch_size < 1:
        raise HwnasError(f"--batch-size must be at least 1, got {batch_size}")
    rank, world, device = init_distributed(device)  # under torchrun: this rank's device
    where = torch_device(device)
    ckpt = load(checkpoint)
    path, chosen = ckpt.path, resolve_arch(ckpt, arch)
    task = make_task(ckpt.task, ckpt.num_classes)
    scales = check_scales(scales, task.name)
    batches = bn_batches(ckpt)
    w, h = chosen.resolution
    if data is None or data in SOURCES:
        dataset = checkpoint_data(ckpt, data)
        sets = [(dataset.name, dataset.scored_on_test() if which == "test" else dataset)]
    else:
        seed = int(ckpt.data.get("config", {}).get("seed", 0))
        sets = _folder_sets(
            Path(data), ckpt.task, which, (h, w), bn_images=batches * BN_BATCH, seed=seed, bn_data=bn_data
        )
    if submission is not None and base_task(task.name) == "segmentation":
        raise HwnasError("--submission writes saliency and SOD maps; segmentation predictions are scored, not written")
    for name, dataset in sets:
        if base_task(task.name) == "segmentation" and dataset.num_classes != task.num_classes:
            raise DataError(
                f"the checkpoint predicts {task.num_classes} classes but {name} has {dataset.num_classes}: "
                "score it on data with its class list"
            )
    if submission is not None and len(sets) > 1:
        raise HwnasError(f"--submission writes one dataset's maps; {data} holds {len(sets)}: pass one of them")
    model = ckpt.model().to(where)
    nets: dict[int, tuple] = {}  # one recalibration per training split

    def subnet_for(dataset: DataSet) -> tuple:
        if ckpt.kind != "supernet":
            return model.eval(), "the subnet checkpoint's own statistics"
        if dataset.train is dataset.val:
            raise DataError(
                f"{data} has no training images to re-estimate the subnet's BN statistics; pass a folder "
                "with a train split with --bn-data (DUTS for SOD test sets)"
            )
        if id(dataset.train) not in nets:
            net = recalibrated_subnet(model, dataset, chosen, bn_batches=batches, batch_size=BN_BATCH)
            used = min(len(dataset.train), batches * BN_BATCH)
            nets[id(dataset.train)] = (net, f"recalibrated on {used} training images of '{dataset.name}' "
                                            f"(at most {batches} batches of {BN_BATCH})")  # fmt: skip
        return nets[id(dataset.train)]

    rows = []
    for name, dataset in sets:
        net, bn = subnet_for(dataset)
        split = dataset.val
        step = progress(f"{name} {which}: predicting and scoring", len(split)) if progress and rank == 0 else None
        flow = Predictions(
            net, dataset, task, "val", batch_size=batch_size, progress=step, rank=rank, world=world, scales=scales
        )
        if rank != 0:  # computes its share of the batches for rank 0, which scores and writes
            for _ in flow:
                pass
            continue
        writer = Submission(split, submission) if submission is not None else None
        passing = writer.passing(flow) if writer is not None else flow
        scores: dict[str, float] = {}
        try:
            if split.labelled:
                scores = score(
                    task, dataset, passing, "val", resolution=chosen.resolution, original=original, shuffle=shuffle
                )  # fmt: skip
            else:
                for _ in passing:  # nothing to score: the maps are written as they come
                    pass
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        written = writer.finish() if writer is not None else None
        rows.append(Row(name, which, len(split), scores, bn, written))
    if rank != 0:
        return None
    notes = [] if any(r.scores for r in rows) else [f"the {which} split has no ground truth: nothing to score"]
    scored_at = "original size" if original else f"{w}x{h} (the subnet's input)"
    if scales != (1.0,):
        scored_at += f", probabilities averaged over input scales {', '.join(f'{s:g}' for s in scales)}"
    return Evaluation(
        checkpoint=path, arch=chosen, task=ckpt.task, bn="; ".join(dict.fromkeys(r.bn for r in rows)),
        scored_at=scored_at, shuffle=shuffle,
        rows=rows, seconds=time.perf_counter() - start, notes=notes, class_names=sets[0][1].class_names,
    )  # fmt: skip


__all__ = [
    "Evaluation", "Predictions", "Row", "Submission", "check_scales", "evaluate_checkpoint", "write_submission"
]  # fmt: skip
