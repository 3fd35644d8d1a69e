"""NATv2's post-processing of a chosen subnet (Sarti, Lomurno, Matteucci, Section 3, "Post-Processing").

Phase 1 fine-tunes the subnet, inherited from the supernet, on the training split and scores it on
the validation split after every epoch, to find the best number of epochs e (stopping early after
`patience` epochs without improvement). Phase 2 starts again from the inherited weights and
fine-tunes for e epochs on training + validation (optionally with Self-KD, SalNAS Algorithm 1),
then scores the held-out test split, which nothing before has seen. Both phases use the same
learning-rate schedule (cosine over `max_epochs`), so that e means the same in both.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import CheckpointError, HwnasError
from hwnas.files import atomic_write_json, nan_to_none, writable_file
from hwnas.nn.checkpoint import file_digest, load
from hwnas.space import Arch
from hwnas.torch_device import torch_device
from hwnas.train.evaluation import evaluate
from hwnas.train.source import bn_batches, checkpoint_data
from hwnas.train.task import higher_is_better, make_task
from hwnas.train.trainer import TrainConfig, fit, initial_subnet


@dataclass(frozen=True)
class PostProcessResult:
    best_epochs: int
    phase1: list[dict[str, float]]  # per epoch: epoch, the validation metric
    inherited: dict[str, float]  # test scores of the inherited subnet, before any fine-tuning
    test: dict[str, float]  # test scores after phase 2
    metric: str
    checkpoint: Path
    report: Path


def post_process(
    supernet: str | Path,
    arch: str | Path | Arch,
    *,
    out: str | Path | None = None,
    max_epochs: int = 10,
    patience: int = 3,
    method: str = "baseline",
    batch_size: int = 32,
    lr: float = 0.01,
    seed: int = 0,
    max_steps: int = 0,
    data: str | None = None,
    on_event=None,
    device: str = "cpu",
) -> PostProcessResult:
    """`hwnas train postprocess`: fine-tune `arch` (best.json, min, max, an arch line or an `Arch`)
    of `supernet` in NATv2's two phases; the phase-2 subnet is saved to `out` (a subnet checkpoint
    that `hwnas export` takes; default `ARCH-postprocessed.pt` beside an arch file, else
    `subnet-postprocessed.pt`) and a JSON report beside it. Everything runs on `device` (a
    `--torch-device`) and is checked before training."""
    where = torch_device(device)
    ckpt = load(supernet)
    space = ckpt.space
    chosen = space.validate(arch) if isinstance(arch, Arch) else space.pick(str(arch), seed)
    out, arch = writable_file(out or default_out(arch), what="checkpoint"), chosen
    if max_epochs < 1 or patience < 1:
        raise HwnasError(f"max epochs and patience must be at least 1, got {max_epochs} and {patience}")
    if ckpt.kind != "supernet":
        raise CheckpointError(f"{supernet} holds a single subnet; post-processing starts from a supernet checkpoint")
    dataset = checkpoint_data(ckpt, data)
    test_data = dataset.scored_on_test()  # fails here, before any training, if there is no test split
    task = make_task(ckpt.task, dataset.num_classes)
    config = TrainConfig(
        epochs=max_epochs, t0=max_epochs, batch_size=batch_size, lr=lr, seed=seed, max_steps=max_steps, method=method
    ).validate()
    inherited = evaluate(ckpt.model().to(where), test_data, task, arch=arch, bn_batches=bn_batches(ckpt))

    def start():
        return initial_subnet(space, arch, task=task.name, num_classes=dataset.num_classes, seed=seed, init=supernet)

    phase1 = _phase1(start(), space, dataset, task, config, patience, on_event, str(where))
    sign = 1 if higher_is_better(task.primary) else -1
    best = max(phase1, key=lambda row: (sign * row[task.primary], -row["epoch"]))["epoch"]
    model = start()
    fit(model, space=space, data=dataset.with_val_in_train(), task=task, config=config, out=out, resume=False,
        on_event=on_event, until=best, device=str(where))  # fmt: skip
    test = evaluate(model, test_data, task)
    report = {
        "supernet": str(supernet),
        "supernet_sha256": file_digest(supernet),
        "arch": space.arch_to_dict(arch),
        "line": str(arch),
        "method": method,
        "metric": task.primary,
        "max_epochs": max_epochs,
        "patience": patience,
        "phase1": phase1,
        "best_epochs": best,
        "data": {
            "name": dataset.name,
            "train": len(dataset.train),
            "val": len(dataset.val),
            "test": len(test_data.val),
        },
        "inherited_test": nan_to_none(inherited),
        "test": nan_to_none(test),
        "checkpoint": str(out),
    }
    path = atomic_write_json(Path(out).with_suffix(".json"), report)
    return PostProcessResult(best, phase1, inherited, test, task.primary, Path(out), path)


def default_out(arch: str | Path | Arch) -> Path:
    """ARCH-postprocessed.pt beside an arch .json file, else subnet-postprocessed.pt here."""
    if str(arch).endswith(".json"):
        return Path(arch).parent / f"{Path(arch).stem}-postprocessed.pt"
    return Path("subnet-postprocessed.pt")


def _phase1(model, space, dataset, task, config, patience, on_event, device: str) -> list[dict[str, Any]]:
    """Fine-tune on train, score on val after each epoch, stop `patience` epochs after the best."""
    sign = 1 if higher_is_better(task.primary) else -1
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hwnas-phase1-") as tmp:
        path = Path(tmp) / "phase1.pt"
        for epoch in range(1, config.epochs + 1):
            result = fit(model, space=space, data=dataset, task=task, config=config, out=path, resume=epoch > 1,
                         on_event=on_event, until=epoch, device=device)  # fmt: skip
            score = result.history[-1]["val"]["subnet"]
            rows.append({"epoch": epoch, task.primary: float(score[task.primary]), "loss": float(score["loss"])})
            best = max(rows, key=lambda row: (sign * row[task.primary], -row["epoch"]))["epoch"]
            if epoch - best >= patience:
                break
    return rows
