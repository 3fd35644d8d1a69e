"""Accuracy of subnets: from a trained supernet (inherited weights, BN recalibrated on training
batches, scored on the validation split; cached by arch so nothing is evaluated twice), or a labelled
proxy (FLOPs or params) when no supernet is given."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from hwnas.errors import CheckpointError
from hwnas.nn.checkpoint import file_digest, load
from hwnas.nn.quantize import Scheme, simulated_int8
from hwnas.search.objectives import Costs
from hwnas.space import Arch, SearchSpace
from hwnas.torch_device import torch_device
from hwnas.train.evaluation import BN_BATCH, evaluate
from hwnas.train.source import bn_batches as checkpoint_bn_batches
from hwnas.train.source import checkpoint_data
from hwnas.train.task import make_task

PROXIES = ("flops", "params")
CALIBRATION_BATCHES = 2  # training batches of 64 images a simulated int8 subnet is calibrated on


class SupernetEvaluator:
    """`evaluator(arch) -> score` (the task's primary metric: CC or top-1) on a trained supernet."""

    def __init__(
        self,
        checkpoint: str | Path,
        space: SearchSpace,
        *,
        data: str | None = None,
        bn_batches: int | None = None,
        device: str = "cpu",
        batch_size: int = BN_BATCH,
        quantization: Scheme | None = None,
    ):
        if batch_size < 1:
            raise CheckpointError(f"--batch-size must be at least 1, got {batch_size}")
        ckpt = load(checkpoint, space=space)
        self.checkpoint, self.config = Path(checkpoint), dict(ckpt.data.get("config", {}))
        if ckpt.kind != "supernet":
            raise CheckpointError(f"{checkpoint} holds a single subnet; search needs a supernet checkpoint")
        self.space, self.task_name = space, ckpt.task
        self.device, self.batch_size = torch_device(device), batch_size
        self.model = ckpt.model().to(self.device)  # extraction, recalibration and prediction run there
        self.task = make_task(ckpt.task, ckpt.num_classes)
        self.data = checkpoint_data(ckpt, data)
        self.bn_batches = bn_batches or checkpoint_bn_batches(ckpt)
        self.metric = self.task.primary
        self.source = "supernet"
        self.identity = f"supernet {file_digest(checkpoint)} on {self.data.name}"  # what scores depend on
        self.quantization = quantization
        if quantization is not None:
            self.source = f"supernet, int8 simulated ({quantization})"
            self.identity += f", int8 simulated ({quantization})"
        self.cache: dict[str, float] = {}

    def __call__(self, arch: Arch) -> float:
        key = str(arch)
        if key not in self.cache:
            with torch.random.fork_rng(devices=[]):
                scores = evaluate(
                    self.model, self.data, self.task, arch=arch, bn_batches=self.bn_batches,
                    batch_size=self.batch_size, transform=self._quantized if self.quantization else None,
                )  # fmt: skip
            self.cache[key] = float(scores[self.metric])
        return self.cache[key]

    def _quantized(self, net: torch.nn.Module) -> torch.nn.Module:
        """The recalibrated subnet with int8 simulated, its activations calibrated on the first
        `CALIBRATION_BATCHES` training batches at its resolution (`hwnas.nn.quantize`)."""
        split = self.data.split("train", net.arch.resolution)
        batches = []
        for batch in self.data.batches(split, BN_BATCH):
            batches.append(batch["image"].to(self.device))
            if len(batches) == CALIBRATION_BATCHES:
                break
        return simulated_int8(net, batches, self.quantization)

    def many(self, x: np.ndarray) -> np.ndarray:
        return np.array([self(self.space.decode(row)) for row in np.asarray(x, dtype=np.int64)])

    def adapt(self, archs: list[Arch], *, epochs: int, round: int, out: str | Path) -> Path:
        """Fine-tune the supernet on subnets drawn from `archs` (NAT/NATv2 supernet adaptation: only
        the parts of the supernet the current trade-off front uses), save it to `out`, and score
        from it from now on (the cache is cleared).

        The training run keeps the checkpoint's settings and seed (so its data is rebuilt the same),
        at a third of its learning rate (NATv2 Section 4.1: 2.5e-3 after warm-up at 7.5e-3), without
        inplace distillation, four subnets per step.
        """
        from hwnas.train.trainer import ArchPool, TrainConfig, fit

        known = {f.name for f in fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in self.config.items() if k in known})
        config = replace(base, epochs=epochs, lr=base.lr / 3, method="baseline", inplace_kd=False, t0=epochs)
        pool = ArchPool(tuple(archs), k=base.sandwich + 2, round=round)
        with torch.random.fork_rng(devices=[]):
            fit(self.model, space=self.space, data=self.data, task=self.task, config=config, out=out, resume=False,
                pool=pool, device=str(self.device))  # fmt: skip
        self.model.eval()
        self.checkpoint, self.config = Path(out), asdict(config)
        self.identity = f"supernet {file_digest(out)} on {self.data.name}"
        self.cache.clear()
        return Path(out)


class ProxyEvaluator:
    """FLOPs or params standing in for accuracy (bigger is assumed better); never an accuracy."""

    def __init__(self, proxy: str, costs: Costs, space: SearchSpace):
        if proxy not in PROXIES:
            raise CheckpointError(f"unknown --proxy '{proxy}'; allowed: {', '.join(PROXIES)}")
        self.proxy, self.costs, self.space = proxy, costs, space
        self.metric = f"proxy-{proxy}"
        self.source = f"proxy-{proxy}"
        self.identity = self.source
        self.cache: dict[str, float] = {}

    def __call__(self, arch: Arch) -> float:
        return float(self.many(self.space.encode(arch)[None])[0])

    def many(self, x: np.ndarray) -> np.ndarray:
        return self.costs(self.proxy, np.asarray(x, dtype=np.int64))
