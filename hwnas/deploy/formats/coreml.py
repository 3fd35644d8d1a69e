"""Core ML: a coremltools mlprogram `.mlpackage` with the device spec's compute precision and units.

Predictions need macOS, so here the package is loaded back with `skip_model_load` and its spec is
checked instead: input name and shape, and the op counts (one `conv` per convolution of the subnet;
int8: one `constexpr_affine_dequantize` per convolution and linear layer, and `quantize` operations).
An int8 package is converted from a torch graph with explicit quantize/dequantize operations
(`hwnas.hardware.backends.coreml.w8a8`); where Core ML cannot run, export scores that graph in torch
for the task's metric and says so in the manifest's notes.
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

from torch import nn

from hwnas.deploy.formats.base import Format, Job, Written
from hwnas.errors import HwnasError
from hwnas.files import atomic_replace_dir
from hwnas.hardware.backends import Runnable
from hwnas.hardware.backends.base import Artifact, quiet_fds
from hwnas.hardware.backends.coreml import CoremlBackend, CoremlRunnable, to_mlmodel, w8a8
from hwnas.hardware.device import Device


def load_package(path: str | Path, *, compile: bool = False):
    """An `MLModel` read from a `.mlpackage`; without `compile` only its spec is read (any OS)."""
    import coremltools as ct

    with quiet_fds():
        return ct.models.MLModel(str(path), skip_model_load=not compile)


def package_summary(model) -> dict:
    """Inputs (name -> shape) and op counts of an mlprogram (what tests and the manifest check)."""
    spec = model.get_spec()
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    main = spec.mlProgram.functions["main"]
    block = main.block_specializations[main.opset]
    ops = collections.Counter(op.type for op in block.operations if op.type != "const")
    return {"inputs": inputs, "outputs": [o.name for o in spec.description.output], "ops": dict(sorted(ops.items()))}


def conv_count(module: nn.Module) -> int:
    """The convolutions `module` runs: its `nn.Conv2d` layers and the eval blur's two 1-D passes."""
    from hwnas.nn.blocks import GaussianBlur

    blur = sum(2 for m in module.modules() if isinstance(m, GaussianBlur) and not m.training)
    return sum(isinstance(m, nn.Conv2d) for m in module.modules()) + blur


class CoremlFormat(Format):
    name = "coreml"
    backend = "coreml"
    default_device = "m2"
    suffix = ".mlpackage"

    def write(self, job: Job, device: Device, folder: Path, name: str) -> Written:
        int8 = device.precision == "int8"
        graph = w8a8(job.subnet, job.calibration_sets()) if int8 else job.subnet
        model = to_mlmodel(graph, [job.input_shape], precision=device.precision, compute_units=device.compute_units)
        path = folder / self.filename(name)
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=folder) as staging:
            staged = Path(staging) / path.name
            with quiet_fds():
                model.save(str(staged))
            summary = package_summary(load_package(staged))
            self._check(summary, job)
            if int8:
                self._check_int8(summary, job)
            atomic_replace_dir(staged, path)
        info = {**summary, "precision": device.precision, "compute_units": device.compute_units}
        written = Written([path], CoremlBackend(device).versions(), info)
        if int8:
            info["quantization"] = (
                "W8A8: int8 weights per output channel, symmetric activations (MinMax; uint8 where never negative)"
            )
            written.twin = graph
        return written

    @staticmethod
    def _check(summary: dict, job: Job) -> None:
        """The package read back must take the job's input and hold one conv per convolution."""
        if summary["inputs"] != {"input0": list(job.input_shape)}:
            raise HwnasError(f"the Core ML package takes {summary['inputs']}, expected input0 {list(job.input_shape)}")
        expected = conv_count(job.subnet)
        if summary["ops"].get("conv", 0) != expected:
            raise HwnasError(
                f"the Core ML package has {summary['ops'].get('conv', 0)} conv ops for {expected} convolutions"
            )

    @staticmethod
    def _check_int8(summary: dict, job: Job) -> None:
        """Every convolution and linear layer's weights are int8 constants, and activations quantized."""
        layers = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in job.subnet.modules())
        ops = summary["ops"]
        if ops.get("constexpr_affine_dequantize", 0) != layers or not ops.get("quantize"):
            raise HwnasError(
                f"the Core ML int8 package has {ops.get('constexpr_affine_dequantize', 0)} int8 weight tensors "
                f"for {layers} layers and {ops.get('quantize', 0)} quantize ops"
            )

    def load(self, written: Written, device: Device, job: Job) -> tuple[Runnable, Artifact]:
        model = load_package(written.artifact, compile=True)
        artifact = Artifact(model, (job.input_shape,))
        return CoremlRunnable(model, artifact.input_shapes), artifact
