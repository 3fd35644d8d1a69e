"""One module per export format; `FORMATS` maps a format's name to its class (each a
`hwnas.deploy.formats.base.Format`)."""

from hwnas.deploy.formats.base import Format
from hwnas.deploy.formats.coreml import CoremlFormat
from hwnas.deploy.formats.onnx import OnnxFormat
from hwnas.deploy.formats.tensorrt import TensorrtFormat
from hwnas.deploy.formats.tflite import TfliteFormat
from hwnas.registry import Registry

FORMATS: Registry[type[Format]] = Registry(
    "export format", {f.name: f for f in (OnnxFormat, TfliteFormat, CoremlFormat, TensorrtFormat)}
)

__all__ = ["FORMATS", "Format"]
