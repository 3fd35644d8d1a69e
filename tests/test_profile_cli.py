"""`hwnas profile` and `hwnas lut validate` for real: ONNX Runtime and LiteRT on this CPU, a real
interruption (SIGKILL) and resume, and the bad inputs of both verbs.

Both tables cover `mini` at 32x32 (`EVERY` block signatures): about a minute on ONNX Runtime, about ten
on LiteRT (litert-torch needs 2-4 s per conversion). One resolution keeps the suite in minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hwnas.hardware.device import packaged_dir
from hwnas.hardware.table import LatencyTable, sidecar_path
from hwnas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
EVERY = len(SearchSpace.load("mini").all_block_signatures([(32, 32)]))  # what a 32x32 mini table holds


def hwnas_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hwnas.cli", *args, "--devices-dir", str(packaged_dir())]


def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(hwnas_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def validate_on_cpu(lut: str, *args: str, space: str = "mini") -> subprocess.CompletedProcess:
    return run("lut", "validate", "--device", "cpu", "--space", space, "--lut", lut, *args)


def rows(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """Profile mini@32x32 on cpu in 2 rounds, SIGKILL it during round 2, then rerun to completion."""
    path = tmp_path_factory.mktemp("lut") / "cpu-mini.parquet"
    args = (
        "profile",
        "--device",
        "cpu",
        "--space",
        "mini",
        "--resolution",
        "32x32",
        "--rounds",
        "2",
        "--out",
        str(path),
    )
    proc = subprocess.Popen(hwnas_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    before = None
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            if path.exists() and (rows(path)["rounds"] == 2).sum() >= 10:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                before = rows(path)
                break
        except Exception:  # a reader may race the atomic rename on some filesystems; retry
            continue
    assert before is not None, "profile did not reach its second round within 5 minutes"
    assert (before["rounds"] == 1).any(), "killed too late: round 2 had already finished"
    assert proc.returncode == -signal.SIGKILL
    meta_before = json.loads(sidecar_path(path).read_text())
    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stderr
    return path, before, meta_before, resumed


@pytest.mark.slow
def test_resume_finishes_without_duplicates_or_remeasuring(interrupted_then_resumed, mini):
    path, before, meta_before, resumed = interrupted_then_resumed
    after = rows(path)
    expected = {s.key for s in mini.all_block_signatures([(32, 32)])}
    assert set(after["key"]) == expected and len(after) == len(expected) == EVERY
    assert not after["key"].duplicated().any()
    assert (after["rounds"] == 2).all()
    # every round measured before the kill is kept as it was, and no round was measured twice
    finished = after.set_index("key")["round_medians_ms"]
    for key, earlier in zip(before["key"], before["round_medians_ms"], strict=True):
        assert list(finished[key][: len(earlier)]) == list(earlier)
        assert len(finished[key]) == 2
    twice = before[before["rounds"] == 2].set_index("key")
    pd.testing.assert_frame_equal(after.set_index("key").loc[twice.index], twice, check_dtype=False)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["overhead"] == meta_before["overhead"] and meta["created"] == meta_before["created"]
    assert f"{EVERY} block signatures on cpu" in resumed.stdout
    assert (after["median_ms"] > 0).all() and (after["n"] >= 15).all()
    middle = after["round_medians_ms"].apply(lambda v: sum(v) / 2)  # the median of two rounds
    assert (after["median_ms"] - middle).abs().max() < 1e-12


def table_meta(path) -> dict:
    return json.loads(sidecar_path(path).read_text())


@pytest.mark.slow
def test_validate_reports_real_figures_and_stores_calibration(interrupted_then_resumed, mini, tmp_path):
    path = interrupted_then_resumed[0]
    report = tmp_path / "report.json"
    result = validate_on_cpu(
        str(path),
        "--samples",
        "8",
        "--resolution",
        "32x32",
        "--rounds",
        "2",
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert table_meta(path)["validation"]["rounds"] == 2
    assert "held-out, as stored" in result.stdout and "Kendall tau" in result.stdout
    assert " of 4, " in result.stdout  # each share with its count and 95% interval
    data = json.loads(report.read_text())
    assert len(data["measured_ms"]) == 8 and all(m > 0 for m in data["measured_ms"])
    assert sum(data["holdout"]) == 4
    assert data["repeatability"]["n"] == 4  # round 1 vs round 2 of the held-out subnets
    assert "the measurement itself" in result.stdout
    table = LatencyTable.load(path, mini)
    # stored only where leave-one-out on the fitting half says it helps (which holds depends on this machine's noise)
    [fit] = data["fits"]
    assert fit["resolution"] == "32x32" and data["resolutions"] == ["32x32"] * 8
    raw_error, line_error = fit["decided_on"]
    assert fit["applied"] == (fit["calibration"]["slope"] > 0 and line_error < raw_error)
    stored = table.calibration_at((32, 32))
    assert fit["applied"] == (stored is not None) == table_meta(path)["validation"]["calibration_applied"]["32x32"]
    assert fit["calibration"]["fitted_on"] == 4
    arch = SearchSpace.parse(mini, data["archs"][0])
    expected = data["calibrated_ms"][0] if fit["applied"] else data["raw_ms"][0]
    assert table.predict(arch) == pytest.approx(expected)
    assert ("stored in" if fit["applied"] else "NOT stored") in result.stdout


@pytest.mark.slow
def test_validate_without_a_resolution_fits_a_line_at_each_profiled_one(tmp_path, mini):
    path = tmp_path / "cpu-mini.parquet"
    profiled = run("profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--resolution", "48x48",
                   "--rounds", "1", "--out", str(path))  # fmt: skip
    assert profiled.returncode == 0, profiled.stderr
    report = tmp_path / "report.json"
    result = validate_on_cpu(str(path), "--samples", "8", "--rounds", "1", "--report", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["resolutions"] == ["32x32"] * 4 + ["48x48"] * 4  # shared evenly, the table's resolutions only
    assert [fit["resolution"] for fit in data["fits"]] == ["32x32", "48x48"]
    assert "32x32 held-out, as stored" in result.stdout and "48x48 held-out, before" in result.stdout
    assert "calibration at 32x32" in result.stdout and "calibration at 48x48" in result.stdout
    table = LatencyTable.load(path, mini)
    for fit in data["fits"]:
        size = tuple(int(v) for v in fit["resolution"].split("x"))
        assert (table.calibration_at(size) is not None) == fit["applied"]


@pytest.mark.slow
def test_tflite_profile_and_validate_on_mini(tmp_path):
    path = tmp_path / "cpu-tflite-mini.parquet"
    args = ("--device", "cpu-tflite", "--space", "mini", "--resolution", "32x32", "--rounds", "2", "--out", str(path))
    result = run("profile", *args, "--no-validate")  # validated below, with a report
    assert result.returncode == 0, result.stderr
    assert "not validated (--no-validate)" in " ".join(result.stderr.split())
    table = rows(path)
    assert len(table) == EVERY and (table["median_ms"] > 0).all() and (table["rounds"] == 2).all()
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["device"]["backend"] == "tflite" and "ai-edge-litert" in meta["versions"]
    result = run(
        "lut",
        "validate",
        "--device",
        "cpu-tflite",
        "--space",
        "mini",
        "--lut",
        str(path),
        "--samples",
        "6",
        "--rounds",
        "2",
        "--resolution",
        "32x32",
        "--report",
        str(tmp_path / "report.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "held-out, before calibration" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["measured_ms"]) == 6 and all(m > 0 for m in report["measured_ms"])
    [fit] = report["fits"]
    assert fit["calibration"]["fitted_on"] == 3
    stored = LatencyTable.load(path, SearchSpace.load("mini")).calibration_at((32, 32))
    assert (stored is not None) == fit["applied"]


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_unknown_device():
    one_error_line(run("profile", "--device", "gpu0", "--space", "mini"), "unknown device 'gpu0'")


@pytest.mark.slow
def test_malformed_device_toml(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nbackend = "onnxruntime"\n[options]\nthreads = -1\n')
    one_error_line(run("profile", "--device", str(spec), "--space", "mini"), "'options.threads' must be a positive")


@pytest.mark.slow
def test_device_whose_runtime_is_absent(tmp_path):
    out = tmp_path / "m2.parquet"
    one_error_line(
        run("profile", "--device", "m2", "--space", "mini", "--out", str(out)), "device 'm2' cannot run on this host"
    )
    assert not out.exists()


@pytest.mark.slow
def test_bad_resolution():
    one_error_line(
        run("profile", "--device", "cpu", "--space", "mini", "--resolution", "32by32"),
        "--resolution must look like 256x192",
    )
    one_error_line(
        run("profile", "--device", "cpu", "--space", "mini", "--resolution", "40x40"),
        "resolution 40x40 is not in space 'mini'",
    )


@pytest.fixture()
def synthetic_lut(tmp_path, mini):
    from tests.test_lut import synthetic_table

    return synthetic_table(mini, resolutions=[(32, 32)], skip=5).save(tmp_path / "t.parquet")


@pytest.mark.slow
def test_validate_truncated_table(synthetic_lut):
    data = synthetic_lut.read_bytes()
    synthetic_lut.write_bytes(data[:100])
    one_error_line(
        run("lut", "validate", "--device", "cpu", "--space", "mini", "--lut", str(synthetic_lut)),
        "is damaged or truncated",
    )


@pytest.mark.slow
def test_validate_table_of_another_space(synthetic_lut):
    one_error_line(
        run("lut", "validate", "--device", "cpu", "--space", "alphanet", "--lut", str(synthetic_lut)),
        "was built for space 'mini'",
    )


@pytest.mark.slow
def test_validate_other_schema_version(synthetic_lut):
    side = sidecar_path(synthetic_lut)
    side.write_text(json.dumps({**json.loads(side.read_text()), "schema_version": 99}))
    one_error_line(
        run("lut", "validate", "--device", "cpu", "--space", "mini", "--lut", str(synthetic_lut)), "schema version 99"
    )


@pytest.mark.slow
def test_validate_with_missing_signatures(synthetic_lut):
    one_error_line(
        validate_on_cpu(
            str(synthetic_lut),
            "--resolution",
            "32x32",
        ),
        "latency table has no entry for",
    )


@pytest.mark.slow
def test_profile_refuses_to_resume_a_table_of_another_device(synthetic_lut):
    one_error_line(
        run("profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--out", str(synthetic_lut)),
        "cannot resume",
    )
