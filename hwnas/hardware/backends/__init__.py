"""Runtime adapters, one module per runtime, behind `Backend` / `Runnable` (see `base`)."""

from __future__ import annotations

from hwnas.hardware.backends.base import Backend, Protocol, Runnable, Timing, measure
from hwnas.hardware.device import BACKENDS, Device


def get_backend(device: Device) -> Backend:
    """The backend for a device spec (`hwnas.hardware.device.BACKENDS`); runtime packages are
    imported only when used."""
    return BACKENDS.get(device.backend)(device)


__all__ = ["Backend", "Protocol", "Runnable", "Timing", "get_backend", "measure"]
