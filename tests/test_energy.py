"""Energy: meters (NVML and RAPL against recorded counter fixtures that do not touch hardware, and
against the real interfaces where this host has them), real CodeCarbon offline, energy per
inference with idle subtraction, carbon by hand, the energy column of a table, energy as a search
objective, `hwnas report`, and the bad inputs. Every estimate must stay labelled as one."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwnas.hardware.device import Device, PowerModel, load_device, packaged_dir
from hwnas.hardware.energy import (
    J_PER_KWH,
    CodeCarbonMeter,
    Energy,
    EnergyError,
    EnergyMeter,
    InferenceEnergy,
    NvmlMeter,
    RaplMeter,
    SpecMeter,
    carbon,
    check_region,
    choose_meter,
    grid_intensity,
    measure_inference_energy,
    rapl_delta,
    rapl_domains,
)
from hwnas.hardware.profiling import profile
from hwnas.hardware.table import LatencyTable
from hwnas.space import SearchSpace
from tests.cli import one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
MICRO = str(ROOT / "tests" / "data" / "micro.toml")


# ---- RAPL: a recorded sysfs tree (no hardware touched) ---------------------------------------
def fake_powercap(root: Path, counters: dict[str, int], ranges: dict[str, int]) -> Path:
    """A powercap folder as Linux lays it out: package zones, one sub-zone, and a non-RAPL zone."""
    for zone, value in counters.items():
        (root / zone).mkdir(parents=True, exist_ok=True)
        (root / zone / "energy_uj").write_text(f"{value}\n")
        (root / zone / "max_energy_range_uj").write_text(f"{ranges[zone]}\n")
    (root / "intel-rapl:0:0").mkdir(exist_ok=True)  # core sub-zone: counted inside package 0 already
    (root / "intel-rapl:0:0" / "energy_uj").write_text("999999999\n")
    (root / "dtpm").mkdir(exist_ok=True)
    return root


def test_rapl_fixture_sums_packages_and_handles_wrap_around(tmp_path):
    """Recorded counter readings, no hardware: package 1 wraps during the window."""
    ranges = {"intel-rapl:0": 262_143_328_850, "intel-rapl:1": 65_532_610_987}
    root = fake_powercap(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 65_532_000_000}, ranges)
    meter = RaplMeter(root)
    assert [d.name for d in rapl_domains(root)] == ["intel-rapl:0", "intel-rapl:1"]
    meter.start()
    (root / "intel-rapl:0" / "energy_uj").write_text("4000000\n")  # +3 J
    (root / "intel-rapl:1" / "energy_uj").write_text("389013\n")  # wrapped: 610987 + 389013 uJ = 1 J
    energy = meter.stop()
    assert energy.source == "measured-rapl" and energy.measured
    assert energy.joules == pytest.approx(3.0 + 1.0, abs=1e-9)
    assert rapl_delta(10, 25, 100) == 15 and rapl_delta(90, 5, 100) == 15


def test_rapl_counter_vanishing_mid_window_is_a_clear_error(tmp_path):
    """Recorded fixture, no hardware: the counter file disappears between start and stop."""
    root = fake_powercap(tmp_path, {"intel-rapl:0": 5}, {"intel-rapl:0": 100})
    meter = RaplMeter(root)
    meter.start()
    (root / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(EnergyError, match="cannot read RAPL counter"):
        meter.stop()
    with pytest.raises(EnergyError, match="no RAPL package zones"):
        RaplMeter(tmp_path / "nothing")


@pytest.mark.skipif(not rapl_domains(), reason="this host exposes no RAPL zones (VM); the fixture tests cover it")
def test_rapl_real_counters_where_present():
    try:
        meter = RaplMeter()
    except EnergyError as exc:
        pytest.skip(f"RAPL present but unreadable here: {exc}")
    meter.start()
    time.sleep(0.6)
    energy = meter.stop()
    assert energy.joules > 0 and 0 < energy.watts < 2000


# ---- NVML: a recorded counter (no hardware touched) -----------------------------------------
class RecordedNvml:
    """Stands in for the pynvml module with recorded total-energy readings (mJ); no GPU touched."""

    def __init__(self, readings_mj, fail_at: int | None = None):
        self.readings, self.fail_at, self.calls = list(readings_mj), fail_at, 0

    def nvmlInit(self):
        return None

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return self.readings.pop(0)


def test_nvml_fixture_reads_millijoules_as_joules():
    meter = NvmlMeter(nvml=RecordedNvml([123_000, 123_000, 125_500]))
    meter.start()
    energy = meter.stop()
    assert energy.source == "measured-nvml" and energy.joules == pytest.approx(2.5)
    assert meter.min_window_s >= 1.0


def test_nvml_lost_mid_window_is_a_clear_error():
    meter = NvmlMeter(nvml=RecordedNvml([1, 1, 1], fail_at=3))
    meter.start()
    with pytest.raises(EnergyError, match="stopped answering mid-window"):
        meter.stop()


def test_nvml_real_interface_where_present():
    try:
        meter = NvmlMeter()
    except EnergyError as exc:
        pytest.skip(f"no NVML GPU here ({exc}); the recorded fixture covers the path")
    meter.start()
    time.sleep(1.1)
    assert meter.stop().joules >= 0


# ---- estimates, energy per inference, carbon ------------------------------------------------
@pytest.mark.slow
def test_codecarbon_offline_gives_a_labelled_estimate():
    meter = CodeCarbonMeter("FRA")
    meter.start()
    a = np.random.default_rng(0).random((300, 300))
    end = time.perf_counter() + 1.2
    while time.perf_counter() < end:
        a @ a
    energy = meter.stop()
    assert energy.source == "estimated-codecarbon" and not energy.measured
    assert energy.joules > 0 and 0 < energy.watts < 1000


class ScriptedMeasuredMeter(EnergyMeter):
    """A fake measured meter (no hardware): 30 W in busy windows (odd), 10 W in idle ones (even)."""

    source = "measured-fake"

    def __init__(self):
        self.windows = 0

    def start(self):
        self.t0 = time.perf_counter()

    def stop(self):
        seconds = time.perf_counter() - self.t0
        self.windows += 1
        return Energy((30.0 if self.windows % 2 == 1 else 10.0) * seconds, seconds, self.source)


def test_energy_per_inference_subtracts_idle_power_for_measured_meters():
    busy = lambda: time.sleep(0.002)  # noqa: E731
    result = measure_inference_energy(busy, ScriptedMeasuredMeter(), batch=4, min_window_s=0.2, latency_ms=2.0)
    assert result.idle_watts == pytest.approx(10.0)
    assert result.watts == pytest.approx(20.0, rel=0.05)
    assert result.inferences == 4 * result.calls and result.calls >= 100
    assert result.joules_per_inference == pytest.approx(result.watts * result.seconds / result.inferences, rel=0.05)


def test_spec_estimate_is_active_watts_times_busy_time_without_idle_subtraction():
    result = measure_inference_energy(
        lambda: time.sleep(0.001), SpecMeter(PowerModel(25.0, 10.0)), min_window_s=0.1, latency_ms=1.0
    )
    assert result.source == "estimated-spec" and result.idle_watts == 0.0
    assert result.watts == pytest.approx(25.0, rel=0.02)


def test_carbon_by_hand():
    energy = InferenceEnergy(3.6, 10.0, 0.0, 100.0, 1, 1, 1, 1.0, "estimated-spec")
    grams = carbon(energy, "USA")
    # 1000 inferences x 3.6 J = 3600 J = 0.001 kWh; USA grid 369.473 g/kWh (CodeCarbon offline data)
    assert grid_intensity("USA") == pytest.approx(369.473)
    assert grams.g_per_1000 == pytest.approx(0.001 * 369.473)
    assert grams.g_salnas == pytest.approx(3.6 * 200 * 64 / J_PER_KWH * 369.473)
    assert grams.source == "estimated-spec"


@pytest.mark.parametrize("region", ["XYZ", "usa", "", "FRANCE"])
def test_unknown_region_is_refused(region):
    with pytest.raises(EnergyError, match="not in CodeCarbon's offline data"):
        check_region(region)


def test_meter_choice_on_this_host_and_without_a_power_model():
    cpu = load_device("cpu")
    assert isinstance(choose_meter(cpu, kind="spec"), SpecMeter)
    auto = choose_meter(cpu)
    assert auto.source in ("measured-rapl", "estimated-codecarbon")
    bare = Device(name="bare", backend="onnxruntime")
    with pytest.raises(EnergyError, match="has no power model"):
        choose_meter(bare, kind="spec")
    with pytest.raises(EnergyError, match="unknown meter 'joulemeter'"):
        choose_meter(cpu, kind="joulemeter")


# ---- the energy column, energy as an objective, the report ---------------------------------
@pytest.fixture(scope="module")
def energy_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("energy") / "cpu-micro.parquet"
    proc = run_cli(
        "profile", "--device", "cpu", "--space", MICRO, "--rounds", "1", "--energy", "--out", str(out),
        "--devices-dir", str(packaged_dir()),
    )  # fmt: skip
    return out, proc


@pytest.mark.slow
def test_profile_energy_column_is_latency_times_spec_watts_and_labelled(energy_table):
    path, proc = energy_table
    assert "energy column: ESTIMATED (estimated-spec)" in proc.stdout
    rows = pd.read_parquet(path)
    assert set(rows["energy_source"]) == {"estimated-spec"}
    assert rows["energy_mj"].to_numpy() == pytest.approx(rows["median_ms"].to_numpy() * 25.0)
    space = SearchSpace.load(MICRO)
    table = LatencyTable.load(path, space)
    assert table.energy_source == "estimated-spec"
    archs = [space.min(), space.max(), space.sample(np.random.default_rng(0))]
    for arch in archs:  # same overhead convention as latency: counted once
        assert table.predict_energy(arch) == pytest.approx(table.raw_ms(arch) * 25.0)
    assert table.predict_energy_many(archs) == pytest.approx([table.predict_energy(a) for a in archs])


@pytest.mark.slow
def test_energy_budget_searches_and_the_label_reaches_the_archive(energy_table, tmp_path):
    path, _ = energy_table
    space = SearchSpace.load(MICRO)
    table = LatencyTable.load(path, space)
    low, high = table.predict_energy(space.min()), table.predict_energy(space.max())
    budget = f"{(low + high) / 2:.4f}mJ"
    out = tmp_path / "search"
    run_cli(
        "search", "--device", "cpu", "--space", MICRO, "--lut", str(path), "--proxy", "flops", "--budget", budget,
        "--algo", "random", "--evals", "8", "--out", str(out), "--devices-dir", str(packaged_dir()),
    )  # fmt: skip
    archive = json.loads((out / "archive.json").read_text())
    assert archive["meta"]["energy_source"] == "estimated-spec"
    assert all(r["values"]["energy"] > 0 for r in archive["records"])
    best = space.load_arch(out / "best.json")
    assert table.predict_energy(best) <= float(budget[:-2])


class FailingMeter(ScriptedMeasuredMeter):
    """A fake measured meter (no hardware) whose counter stops answering in its `fail_on`-th window."""

    def __init__(self, fail_on: int):
        super().__init__()
        self.fail_on = fail_on

    def stop(self):
        if self.windows + 1 == self.fail_on:
            raise EnergyError("the fake counter stopped answering mid-window")
        return super().stop()


@pytest.mark.slow
def test_meter_failing_mid_table_leaves_only_whole_energy_rows(tmp_path):
    out = tmp_path / "t.parquet"
    space = SearchSpace.load(MICRO)
    # windows: overhead (busy, idle), block 1 (busy, idle), block 2 (busy, idle), block 3 busy fails
    with pytest.raises(EnergyError, match="mid-window"):
        profile(load_device("cpu"), space, out=out, rounds=1, energy=True, meter=FailingMeter(fail_on=7))
    rows = pd.read_parquet(out)
    done = rows[rows["energy_mj"].notna()]
    assert len(done) == 2 and set(done["energy_source"]) == {"measured-fake"}
    assert rows[rows["energy_mj"].isna()]["energy_source"].isna().all()
    assert rows["median_ms"].notna().all()  # the latency rows were complete before energy began


@pytest.mark.slow
def test_report_gives_seven_measures_with_estimates_labelled(tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli(
        "report", "--device", "cpu", "--space", "mini", "--arch", "min", "--batch", "4", "--passes", "10",
        "--json", str(out), "--devices-dir", str(packaged_dir()),
    )  # fmt: skip
    data = json.loads(out.read_text())
    measures = {m["name"]: m for m in data["measures"]}
    assert {"FLOPs", "params", "size", "emission", "power", "latency", "throughput"} <= set(measures)
    for name in ("emission", "power", "energy"):
        assert measures[name]["source"].startswith("estimated-codecarbon")
        assert measures[name]["value"] > 0
    assert measures["latency"]["source"].startswith("measured") and measures["latency"]["value"] > 0
    assert data["details"]["energy"]["source"] == "estimated-codecarbon"
    assert measures["params"]["value"] == pytest.approx(
        SearchSpace.load("mini").params(SearchSpace.load("mini").min()) / 1e6
    )
    assert "ESTIMATE" in proc.stdout


@pytest.mark.slow
def test_report_and_profile_bad_energy_inputs(tmp_path):
    devices = str(packaged_dir())
    line = one_error_line(
        run_cli("report", "--device", "cpu", "--space", "mini", "--arch", "min", "--region", "XYZ",
                "--devices-dir", devices, check=False)
    )  # fmt: skip
    assert "region 'XYZ' is not in CodeCarbon's offline data" in line
    bare = tmp_path / "bare.toml"
    bare.write_text('name = "bare"\nbackend = "onnxruntime"\n[options]\nthreads = 2\n')
    out = tmp_path / "bare.parquet"
    line = one_error_line(
        run_cli("profile", "--device", str(bare), "--space", MICRO, "--energy", "--meter", "codecarbon",
                "--out", str(out), check=False)
    )  # fmt: skip
    assert "has no power model" in line
    assert not out.exists()
