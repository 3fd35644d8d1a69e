"""What every export format shares: the job (one static subnet and its fixed input), the `Format`
protocol, per-precision tolerances, and what a written artifact reports back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from hwnas.hardware.backends import Runnable, get_backend
from hwnas.hardware.backends.base import Artifact
from hwnas.hardware.device import Device
from hwnas.space import Arch, SearchSpace


@dataclass
class Job:
    """One static subnet to export: its arch, task, fixed NCHW input shape and ONNX options.

    `cache` keeps work two formats share (the ONNX graph feeds both `onnx` and `tensorrt`).
    """

    subnet: nn.Module
    space: SearchSpace
    arch: Arch
    task: str
    input_shape: tuple[int, int, int, int]
    num_classes: int = 1000
    exporter: str = "dynamo"
    opset: int = 18
    calibration: list[list[Any]] | None = None  # input sets an int8 artifact is calibrated on
    cache: dict[Any, Any] = field(default_factory=dict)

    def calibration_sets(self) -> list[list[Any]]:
        if self.calibration is None:
            raise ValueError("an int8 export needs calibration images (export sets them)")
        return self.calibration


@dataclass(frozen=True)
class Tolerance:
    """Outputs pass when every element has |artifact - torch| <= atol + rtol * |torch| (np.allclose);
    `of_range`: atol is a fraction of the torch output's range (max - min) instead of absolute."""

    atol: float
    rtol: float
    of_range: bool = False

    def bound(self, expected) -> object:
        """The largest difference allowed at each element of `expected` (a numpy array)."""
        import numpy as np

        atol = self.atol * float(expected.max() - expected.min()) if self.of_range else self.atol
        return atol + self.rtol * np.abs(expected)


# int8: every output within a quarter of the fp32 output's range. An int8 tensor has 256 steps over
# its calibrated range, and a value outside it is clipped: over 20 seeded blocks the mean difference
# stayed under 0.4% of the range but single elements reached 17% (tests/test_quantization.py).
# What an int8 model is judged by is the task's metric on images (`export --max-drop`).
TOLERANCES = {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(1e-2, 1e-2), "int8": Tolerance(0.25, 0.0, True)}


@dataclass
class Written:
    """The files one format wrote (the artifact first), the tools that made them, and notes."""

    paths: list[Path]
    tools: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verifiable: bool = True
    inputs: list[str] = field(default_factory=lambda: ["input0"])  # tensor names as the artifact has them
    outputs: list[str] = field(default_factory=lambda: ["output0"])
    # the torch graph the artifact was converted from, where that graph computes what the artifact
    # does (Core ML int8: explicit quantize/dequantize), scored in torch where the runtime cannot run
    twin: nn.Module | None = None

    @property
    def artifact(self) -> Path:
        return self.paths[0]


class Format(ABC):
    """One artifact kind: how to write it and, where its runtime runs here, how to load it back."""

    name: ClassVar[str]
    backend: ClassVar[str]
    default_device: ClassVar[str]
    suffix: ClassVar[str]

    def filename(self, name: str) -> str:
        return f"{name}{self.suffix}"

    def tolerance(self, device: Device) -> Tolerance:
        return TOLERANCES.get(device.precision, TOLERANCES["fp16"])

    @abstractmethod
    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        """Convert `job.subnet` for `device` and write it under `folder` atomically."""

    def unavailable(self, device: Device) -> str | None:
        """Why the artifact's runtime cannot run on this host, or None if it can."""
        return device.availability()

    def load(self, written: Written, device: Device, job: Job) -> tuple[Runnable, Artifact]:
        """The artifact on disk, loaded by the device's runtime (what verification runs)."""
        artifact = Artifact(written.artifact.read_bytes(), (job.input_shape,))
        return get_backend(device).load(artifact), artifact
