"""Errors a user can act on. The CLI turns any `HwnasError` into one red line and exit code 2."""

from __future__ import annotations


class HwnasError(Exception):
    """Base class: the message says what was wrong and what is allowed."""


class SpaceError(HwnasError):
    """A search-space preset or TOML file is unknown, malformed or inconsistent."""


class ArchError(HwnasError):
    """An architecture (JSON, string or vector) does not belong to its search space."""


class CheckpointError(HwnasError):
    """A supernet checkpoint is missing, corrupted or was built for another space."""


class MissingExtra(HwnasError):
    """An optional dependency is not installed; the message names the extra that brings it."""


# the top-level module of each optional dependency -> the extra of pyproject.toml that installs it
EXTRA_OF_MODULE = {
    "pymoo": "search",
    "lightgbm": "search",
    "sklearn": "search",
    "matplotlib": "search",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "onnxslim": "onnx",
    "ai_edge_litert": "tflite",
    "litert_torch": "tflite",
    "coremltools": "coreml",
    "tensorrt": "tensorrt",
    "onnxconverter_common": "tensorrt",
    "codecarbon": "energy",
    "pynvml": "energy",
    "fastapi": "agent",
    "uvicorn": "agent",
    "httpx": "agent",
    "PIL": "data",
    "py_sod_metrics": "sod",
    "torchmetrics": "seg",
}


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The `MissingExtra` for an import of an optional dependency that failed, else None (a module
    hwnas needs always, or one of its own, is a broken install, not a missing extra)."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    where = " from NVIDIA's index" if extra == "tensorrt" else ""
    return MissingExtra(f"this needs {module}, which is not installed: pip install 'hwnas[{extra}]'{where}")
