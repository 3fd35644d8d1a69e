"""Where torch runs a network: the `--torch-device` of every verb that trains, recalibrates, predicts
or scores (cpu, cuda, cuda:N, mps), checked once here for all of them.

`check_torch_device` reads the text alone (no torch import, so a mistyped flag answers before a
verb loads torch); `torch_device` also asks torch whether this host has that device.
"""

from __future__ import annotations

import re

from hwnas.errors import HwnasError

ALLOWED = "cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")


def check_torch_device(text: str) -> str:
    """`text` if it names a torch device hwnas runs on, else an `HwnasError` listing what is allowed."""
    if not isinstance(text, str) or not _PATTERN.fullmatch(text):
        raise HwnasError(f"--torch-device '{text}' is not a device torch runs hwnas on; allowed: {ALLOWED}")
    return text


def torch_device(text: str):
    """The `torch.device` of `text`, once this host is known to have it: CUDA (and the GPU index)
    or Apple's MPS, else an `HwnasError` that says what the host has."""
    import torch

    check_torch_device(text)
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HwnasError(f"--torch-device {text}: this host has no CUDA GPU (torch {torch.__version__}); use cpu")
        index = int(text.partition(":")[2] or 0)
        if index >= count:
            raise HwnasError(f"--torch-device {text}: this host has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if text == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise HwnasError("--torch-device mps: Apple's Metal backend is not available on this host; use cpu")
    return torch.device(text)


def device_of(module) -> object:
    """The device a module's first parameter (or buffer) lives on; the CPU for one with neither."""
    import torch

    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def on_device(batch: dict, device) -> dict:
    """A batch's tensors moved to `device` (asynchronously from pinned memory on CUDA)."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
