"""One module per export format; `FORMATS` maps a format's name to its class (each a
`hwnas.deploy.formats.base.Format`), imported on first `get` so that `parse_formats` checks a
`--format` before torch is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwnas.errors import HwnasError
from hwnas.registry import Registry

if TYPE_CHECKING:
    from hwnas.deploy.formats.base import Format

FORMATS: Registry[type[Format]] = Registry(
    "export format",
    {
        "onnx": "hwnas.deploy.formats.onnx:OnnxFormat",
        "tflite": "hwnas.deploy.formats.tflite:TfliteFormat",
        "coreml": "hwnas.deploy.formats.coreml:CoremlFormat",
        "tensorrt": "hwnas.deploy.formats.tensorrt:TensorrtFormat",
    },
)


def parse_formats(formats: str | list[str]) -> list[str]:
    """`onnx,tflite` or a list -> known, distinct format names in the order given."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise HwnasError(f"no export format given; allowed: {', '.join(FORMATS.names())}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise HwnasError(f"unknown export format(s) {', '.join(unknown)}; allowed: {', '.join(FORMATS.names())}")
    return list(dict.fromkeys(names))


__all__ = ["FORMATS", "parse_formats"]
