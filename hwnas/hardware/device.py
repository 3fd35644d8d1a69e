"""`Device`: a hardware target from a TOML spec: a preset shipped in the package
(`hwnas/hardware/specs/*.toml`), a user's `./devices/*.toml` (or `--devices-dir`) that overrides a
preset of the same name, or any path.

A spec names the backend that runs on the target, its options (threads, precision, compute units,
execution provider), the batch size, a power model (for energy estimates) and a grid region (for
carbon). Specs are validated on load; `Device.availability()` says whether the target runs on this
host and, if not, why and what to do instead.
"""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from hwnas.config import check_name, load_toml
from hwnas.errors import HwnasError
from hwnas.registry import Registry

PRECISIONS = ("fp32", "fp16", "int8")
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
USER_DIR = Path("devices")  # a user's own specs, read first when it exists
_KEYS = {"name", "description", "backend", "options", "batch", "power", "region", "meter", "machine", "system"}
METERS = ("auto", "nvml", "rapl", "codecarbon", "spec")
_OPTION_KEYS = {"threads", "precision", "compute_units", "provider", "device", "exporter", "opset"}


class DeviceError(HwnasError):
    """A device spec is unknown or malformed, or its runtime is absent here."""


BACKENDS: Registry = Registry(
    "backend",
    {  # the runtime a spec names -> its `hwnas.hardware.backends.base.Backend`, imported when first used
        "onnxruntime": "hwnas.hardware.backends.onnxruntime:OnnxRuntimeBackend",
        "tflite": "hwnas.hardware.backends.tflite:TfliteBackend",
        "torch": "hwnas.hardware.backends.torch:TorchBackend",
        "coreml": "hwnas.hardware.backends.coreml:CoremlBackend",
        "tensorrt": "hwnas.hardware.backends.tensorrt:TensorrtBackend",
    },
    error=DeviceError,
)


# The precisions each runtime builds (hwnas/hardware/backends): ONNX Runtime, LiteRT and Core ML
# (W8A8, from torch's explicit quantize/dequantize graph) quantize to int8 themselves; ONNX
# Runtime's fp16 is the execution provider's own (CANN's, TensorRT's), not the CPU provider's,
# which has no fp16 kernels for most of a network; torch eager runs fp32.
BACKEND_PRECISIONS = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "tflite": ("fp32", "int8"),
    "torch": ("fp32",),
    "coreml": ("fp32", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}


def check_precision(backend: str, precision: str, provider: str = "CPUExecutionProvider") -> str:
    """`precision` if `backend` builds it (one line naming what it builds if not)."""
    allowed = BACKEND_PRECISIONS.get(backend, PRECISIONS)
    if backend == "onnxruntime" and provider == "CPUExecutionProvider":
        allowed = ("fp32", "int8")
    if precision not in allowed:
        where = f"{backend} with {provider}" if backend == "onnxruntime" else backend
        raise DeviceError(f"precision {precision} is not built by {where}; it builds: {', '.join(allowed)}")
    return precision


@dataclass(frozen=True)
class PowerModel:
    """Active and idle power draw in watts, for estimated energy (labelled as estimates)."""

    active_w: float
    idle_w: float


@dataclass(frozen=True)
class Device:
    name: str
    backend: str
    threads: int = 1
    precision: str = "fp32"
    compute_units: str = "ALL"
    provider: str = "CPUExecutionProvider"
    torch_device: str = "cpu"
    exporter: str = "torchscript"
    opset: int = 18
    batch: int = 1
    power: PowerModel | None = None
    region: str | None = None
    meter: str = "auto"
    machine: str | None = None
    system: str | None = None
    description: str = ""
    source: str = ""

    def availability(self) -> str | None:
        """None if this device can be measured on this host, else the reason it cannot."""
        return _availability(self)

    def require_available(self) -> None:
        reason = self.availability()
        if reason is not None:
            raise DeviceError(
                f"device '{self.name}' cannot run on this host: {reason}. Run `hwnas agent` on the "
                f"target and pass --remote, or pick a device that runs here (see `hwnas devices`)"
            )

    def at_precision(self, precision: str | None) -> Device:
        """This device building `precision` instead of its spec's (`--precision`), if its backend
        builds it; the name gains the precision (`cpu` at int8 is `cpu-int8`) unless it is the spec's."""
        if precision is None or precision == self.precision:
            return self
        if precision not in PRECISIONS:
            raise DeviceError(f"unknown precision '{precision}'; allowed: {', '.join(PRECISIONS)}")
        check_precision(self.backend, precision, self.provider)
        return replace(self, name=f"{self.name}-{precision}", precision=precision)

    def options(self) -> dict:
        """The options that change a measurement, recorded in every latency table's sidecar."""
        return {
            "threads": self.threads,
            "precision": self.precision,
            "compute_units": self.compute_units,
            "provider": self.provider,
            "torch_device": self.torch_device,
            "exporter": self.exporter,
            "opset": self.opset,
            "batch": self.batch,
        }


def _fail(source: str, key: str, expected: str, got: object) -> DeviceError:
    return DeviceError(f"{source}: field '{key}' must be {expected}, got {got!r}")


def _positive_int(table: dict, key: str, default: int, source: str, where: str = "") -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(source, where + key, "a positive integer", value)
    return value


def _choice(table: dict, key: str, allowed: tuple, default: str, source: str, where: str = "") -> str:
    value = table.get(key, default)
    if value not in allowed:
        raise _fail(source, where + key, f"one of {list(allowed)}", value)
    return value


def parse_device(text: str, *, source: str) -> Device:
    """Validate a device spec's TOML text."""
    data = load_toml(text, source=source, allowed=_KEYS, error=DeviceError)
    name = check_name(data.get("name"), source=source, error=DeviceError)
    if "backend" not in data:
        raise DeviceError(f"{source}: missing field 'backend'; allowed: {BACKENDS.names()}")
    backend = _choice(data, "backend", tuple(BACKENDS), "", source)
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise _fail(source, "options", "a table", options)
    if set(options) - _OPTION_KEYS:
        raise DeviceError(
            f"{source}: unknown option(s) {sorted(set(options) - _OPTION_KEYS)}; allowed: {sorted(_OPTION_KEYS)}"
        )
    provider = options.get("provider", "CPUExecutionProvider")
    if not isinstance(provider, str) or not provider.endswith("ExecutionProvider"):
        raise _fail(source, "options.provider", "an ONNX Runtime provider name like 'CPUExecutionProvider'", provider)
    torch_device = options.get("device", "cpu")
    if torch_device not in ("cpu", "cuda"):
        raise _fail(source, "options.device", "'cpu' or 'cuda'", torch_device)
    return Device(
        name=name,
        backend=backend,
        threads=_positive_int(options, "threads", 1, source, "options."),
        precision=_precision(options, backend, provider, source),
        compute_units=_choice(options, "compute_units", COMPUTE_UNITS, "ALL", source, "options."),
        provider=provider,
        torch_device=torch_device,
        exporter=_choice(options, "exporter", ("torchscript", "dynamo"), "torchscript", source, "options."),
        opset=_positive_int(options, "opset", 18, source, "options."),
        batch=_positive_int(data, "batch", 1, source),
        power=_parse_power(data.get("power"), source),
        region=_parse_region(data.get("region"), source),
        meter=_choice(data, "meter", METERS, "auto", source),
        machine=_optional_word(data, "machine", source),
        system=_optional_word(data, "system", source),
        description=str(data.get("description", "")),
        source=source,
    )


def _precision(options: dict, backend: str, provider: str, source: str) -> str:
    precision = _choice(options, "precision", PRECISIONS, "fp32", source, "options.")
    try:
        return check_precision(backend, precision, provider)
    except DeviceError as exc:
        raise DeviceError(f"{source}: {exc}") from None


def _optional_word(data: dict, key: str, source: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail(source, key, "a non-empty string (as platform.machine()/platform.system() print it)", value)
    return value


def _parse_power(value: object, source: str) -> PowerModel | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"active_w", "idle_w"}:
        raise _fail(source, "power", "a table with active_w and idle_w (watts)", value)
    active, idle = value["active_w"], value["idle_w"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in (active, idle)):
        raise _fail(source, "power", "non-negative numbers of watts", value)
    if active < idle:
        raise DeviceError(f"{source}: power.active_w ({active}) is below power.idle_w ({idle})")
    return PowerModel(float(active), float(idle))


def _parse_region(value: object, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise _fail(source, "region", "an ISO 3166 alpha-3 country code like 'USA'", value)
    return value


def packaged_dir() -> Path:
    """The folder of the specs shipped with hwnas (package data)."""
    return Path(str(resources.files("hwnas.hardware") / "specs"))


def search_path(devices_dir: str | Path | None = None) -> list[Path]:
    """Where names are looked up, first match wins: `devices_dir` (default `./devices`, if it
    exists) and then the packaged specs, so a user's spec of the same name overrides a preset."""
    if devices_dir is not None and not Path(devices_dir).is_dir():
        raise DeviceError(f"--devices-dir {devices_dir} is not a folder; give a folder of device spec .toml files")
    user = Path(devices_dir) if devices_dir is not None else USER_DIR
    return [user, packaged_dir()] if user.is_dir() else [packaged_dir()]


def spec_path(name: str, devices_dir: str | Path | None = None) -> Path | None:
    """The file a device name resolves to, or None."""
    for folder in search_path(devices_dir):
        if (folder / f"{name}.toml").is_file():
            return folder / f"{name}.toml"
    return None


def load_device(name_or_path: str | Path, devices_dir: str | Path | None = None) -> Device:
    """A device by name (see `search_path`) or by path to a TOML file."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix != ".toml":
        found = spec_path(text, devices_dir)
        if found is None:
            where = " and ".join(f"{p}/" for p in search_path(devices_dir))
            known = ", ".join(device_names(devices_dir)) or "none"
            raise DeviceError(f"unknown device '{text}'; known in {where}: {known}; or pass a .toml path")
        path = found
    elif not path.is_file():
        raise DeviceError(f"device spec {path} does not exist")
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceError(f"cannot read device spec {path}: {exc}") from None
    return parse_device(body, source=str(path))


def device_names(devices_dir: str | Path | None = None) -> list[str]:
    """Every name `load_device` resolves: the user's folder and the packaged specs together."""
    return sorted({p.stem for folder in search_path(devices_dir) for p in folder.glob("*.toml")})


# ---- availability ---------------------------------------------------------------------------
def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _availability(device: Device) -> str | None:
    if device.machine is not None and platform.machine().lower() != device.machine.lower():
        return f"it targets {device.machine} and this host is {platform.machine()}"
    if device.system is not None and platform.system() != device.system:
        return f"it targets {device.system} and this host runs {platform.system()}"
    if device.backend == "onnxruntime":
        if not _has("onnxruntime"):
            return "package onnxruntime is not installed (pip install 'hwnas[onnx]')"
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        if device.provider not in providers:
            return f"ONNX Runtime here has no {device.provider} (available: {', '.join(providers)})"
        return None
    if device.backend == "tflite":
        missing = [m for m in ("ai_edge_litert", "litert_torch") if not _has(m)]
        return f"package(s) {', '.join(missing)} not installed (pip install 'hwnas[tflite]')" if missing else None
    if device.backend == "torch":
        return "no CUDA GPU on this host" if device.torch_device == "cuda" and not _cuda_available() else None
    if device.backend == "coreml":
        if platform.system() != "Darwin":
            return "Core ML runs models only on macOS (this host converts but cannot measure)"
        return None if _has("coremltools") else "package coremltools is not installed (pip install 'hwnas[coreml]')"
    if device.backend == "tensorrt":
        if not _has("tensorrt"):
            return "package tensorrt is not installed (pip install 'hwnas[tensorrt]' from NVIDIA's index)"
        if not _cuda_available() and shutil.which("nvidia-smi") is None:
            return "no NVIDIA GPU on this host"
        return None
    return f"unknown backend {device.backend}"
