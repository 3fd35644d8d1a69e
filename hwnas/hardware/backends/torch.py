"""PyTorch eager backend: the numerical reference and speed baseline (CPU, or CUDA synchronised)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.hardware.backends.base import Artifact, Backend, Runnable


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads, restoring torch's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cuda_event_timer(call: Callable[[], object], stream) -> Callable[[], int]:
    """Nanoseconds of one `call` on `stream`, timed with CUDA events (the GPU protocol)."""

    def timed() -> int:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            start.record(stream)
            call()
            end.record(stream)
        end.synchronize()
        return int(start.elapsed_time(end) * 1e6)

    return timed


class TorchRunnable(Runnable):
    def __init__(self, module: nn.Module, input_shapes, device: str, threads: int):
        super().__init__(input_shapes)
        self.module, self.device, self.threads = module.eval().to(device), device, threads

    def _tensors(self, inputs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=self.device) for x in inputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode(), torch_threads(self.threads):
            out = self.module(*self._tensors(inputs))
        outs = out if isinstance(out, tuple | list) else [out]
        return [o.detach().cpu().numpy() for o in outs]

    def bind(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        tensors, module, cuda = self._tensors(inputs), self.module, self.device == "cuda"

        def call() -> None:
            with torch.inference_mode(), torch_threads(self.threads):
                module(*tensors)
                if cuda:
                    torch.cuda.synchronize()

        return call

    def timer(self, call: Callable[[], object]) -> Callable[[], int] | None:
        return cuda_event_timer(call, torch.cuda.Stream()) if self.device == "cuda" else None


class TorchBackend(Backend):
    name = "torch"

    def prepare(self, module: nn.Module, input_shapes: Sequence[tuple[int, ...]]) -> Artifact:
        return Artifact(module.eval(), tuple(tuple(s) for s in input_shapes))

    def load(self, artifact: Artifact) -> TorchRunnable:
        return TorchRunnable(artifact.payload, artifact.input_shapes, self.device.torch_device, self.device.threads)

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}
