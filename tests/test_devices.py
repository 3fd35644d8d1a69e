"""Device specs: the shipped targets, availability on this host, and malformed specs."""

from __future__ import annotations

import platform

import pytest
import torch

from hwnas.hardware.device import DeviceError, device_names, load_device, packaged_dir, parse_device

DEVICES = packaged_dir()
SHIPPED = [
    "ascend310", "cpu", "cpu-int8", "cpu-tflite", "cpu-tflite-int8", "cpu-torch", "cuda-torch", "m2", "m2-int8",
    "rtx4090", "rtx4090-int8", "snapdragon8", "snapdragon8-int8",
]  # fmt: skip

GOOD = """
name = "board"
backend = "onnxruntime"
batch = 1
region = "DEU"
[options]
threads = 2
provider = "CPUExecutionProvider"
[power]
active_w = 5.0
idle_w = 1.0
"""


def test_shipped_specs_load():
    assert device_names(DEVICES) == SHIPPED
    specs = {n: load_device(n, DEVICES) for n in SHIPPED}
    assert specs["cpu"].backend == "onnxruntime" and specs["cpu"].threads == 2
    assert specs["cpu-tflite"].backend == "tflite"
    assert specs["m2"].backend == "coreml" and specs["m2"].compute_units == "ALL"
    assert specs["ascend310"].provider == "CANNExecutionProvider"
    assert specs["rtx4090"].backend == "tensorrt" and specs["rtx4090"].power.active_w == 450.0
    assert {n: specs[n].precision for n in SHIPPED if n.endswith("-int8")} == dict.fromkeys(
        ["cpu-int8", "cpu-tflite-int8", "m2-int8", "rtx4090-int8", "snapdragon8-int8"], "int8"
    )


@pytest.mark.slow
def test_availability_on_this_host():
    """The local CPU devices run here; hardware that is absent says why (this host: Linux x86_64, no GPU)."""
    assert load_device("cpu", DEVICES).availability() is None
    assert load_device("cpu-tflite", DEVICES).availability() is None
    assert load_device("cpu-torch", DEVICES).availability() is None
    if platform.machine() == "x86_64":
        assert "targets aarch64" in load_device("snapdragon8", DEVICES).availability()
        assert "targets arm64" in load_device("m2", DEVICES).availability()
    assert "CANNExecutionProvider" in load_device("ascend310", DEVICES).availability()
    assert load_device("cuda-torch", DEVICES).torch_device == "cuda"
    if not torch.cuda.is_available():
        assert load_device("cuda-torch", DEVICES).availability() == "no CUDA GPU on this host"
    with pytest.raises(DeviceError, match="cannot run on this host: .*hwnas agent"):
        load_device("ascend310", DEVICES).require_available()


def test_spec_by_path(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(GOOD)
    device = load_device(path)
    assert (device.name, device.region, device.power.idle_w) == ("board", "DEU", 1.0)


def test_unknown_device_lists_known():
    with pytest.raises(DeviceError, match=r"unknown device 'gpu'; known in .*: ascend310, cpu, cpu-int8, cpu-tflite"):
        load_device("gpu", DEVICES)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('backend = "onnxruntime"', 'backend = "openvino"', r"'backend' must be one of \['onnxruntime', 'tflite'"),
        ('backend = "onnxruntime"\n', "", "missing field 'backend'"),
        ("threads = 2", "threads = 0", "'options.threads' must be a positive integer, got 0"),
        ("threads = 2", 'threads = "2"', "'options.threads' must be a positive integer"),
        (
            'provider = "CPUExecutionProvider"',
            'provider = "CPU"',
            "'options.provider' must be an ONNX Runtime provider",
        ),
        ("threads = 2", "thread = 2", r"unknown option\(s\) \['thread'\]"),
        ('region = "DEU"', 'region = "Germany"', "'region' must be an ISO 3166 alpha-3 country code"),
        ('region = "DEU"', 'region = "DEU"\nmeter = "wattmeter"', r"'meter' must be one of \['auto', 'nvml', 'rapl'"),
        ("idle_w = 1.0", "idle_w = 9.0", r"power.active_w \(5.0\) is below power.idle_w \(9.0\)"),
        ("idle_w = 1.0", "", "'power' must be a table with active_w and idle_w"),
        ("batch = 1", "batch = [1]", "'batch' must be a positive integer"),
        ('name = "board"', 'name = "my board"', "'name' must be a word"),
        ("[power]", "[power", "not valid TOML"),
    ],
)
def test_malformed_spec_names_the_field(old, new, message):
    assert old in GOOD
    with pytest.raises(DeviceError, match=message):
        parse_device(GOOD.replace(old, new, 1), source="board.toml")
