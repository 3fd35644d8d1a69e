"""`hwnas profile --few-shot N`: a table predicted from N whole subnets and other devices' tables.

The fast tests time nothing: `MixedDevice` is a fake measurer standing for a device whose whole
subnets take a known mix of two source tables' block sums (so the fit has an exact answer). The
slow test profiles a real runtime (torch on this CPU) and predicts ONNX Runtime's table from it
with subnets measured for real.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.hardware.backends.base import Timing
from hwnas.hardware.device import load_device
from hwnas.hardware.fewshot import candidate_archs, fewshot_profile, fit_mix
from hwnas.hardware.table import LatencyTable, LutError
from hwnas.space import SearchSpace
from tests.fake_machine import QuietSentinel

RESOLUTIONS = [(32, 32)]
TRUE_MIX = (0.5, 2.0, 0.3)  # the fake device: 0.5 x A's block sum + 2 x B's + 0.3 ms


def source_table(space: SearchSpace, name: str, per_flop: float, per_kernel: float, overhead: float) -> LatencyTable:
    """A measured-looking table of device `name` whose block costs are known functions of the signature."""
    table = LatencyTable.new(
        device={"name": name, "backend": "onnxruntime", "threads": 2, "precision": "fp32"},
        versions={"runtime": "1.0"}, space=space, task="saliency", resolutions=RESOLUTIONS,
        overhead=Timing(overhead, overhead, overhead, overhead, 0.0, 10), protocol={},
    )  # fmt: skip
    for sig in space.all_block_signatures(RESOLUTIONS, "saliency"):
        cost = overhead + per_flop * sig.flops() / 1e9 + per_kernel * sig.kernel
        table.record(sig, Timing(cost, cost, cost, cost, 0.0, 10))
    return table


class MixedDevice(QuietSentinel):
    """A fake measurer standing for a device whose whole-subnet time is `TRUE_MIX` of two tables."""

    where = "local"

    def __init__(self, a: LatencyTable, b: LatencyTable):
        self.a, self.b, self.seen = a, b, []

    def host(self) -> dict:
        return {"node": "fake"}

    def versions(self) -> dict:
        return {"runtime": "fake"}

    def truth(self, arch) -> float:
        return TRUE_MIX[0] * self.a.raw_ms(arch) + TRUE_MIX[1] * self.b.raw_ms(arch) + TRUE_MIX[2]

    def archs(self, space, archs, task, *, num_classes=1000, rounds, statistic, protocol, progress):
        self.seen += list(archs)
        return np.tile([self.truth(a) for a in archs], (rounds, 1))


@pytest.fixture()
def folder(tmp_path, mini):
    """A lut/ folder with two measured tables of mini (devices `a` and `b`)."""
    lut = tmp_path / "lut"
    a, b = source_table(mini, "a", 1.0, 0.002, 0.01), source_table(mini, "b", 0.3, 0.004, 0.02)
    a.save(lut / "a-mini.parquet")
    b.save(lut / "b-mini.parquet")
    return lut


def _run(folder, mini, samples=6, **options):
    a, b = (LatencyTable.load(folder / f"{n}-mini.parquet", mini) for n in "ab")
    machine = MixedDevice(a, b)
    result = fewshot_profile(load_device("cpu"), mini, samples=samples, resolutions=["32x32"],
                             out=folder / "cpu-mini.parquet", measurer=machine, **options)  # fmt: skip
    return result, machine


def test_the_fit_recovers_the_device_and_its_table_predicts_every_subnet(folder, mini):
    result, machine = _run(folder, mini)
    assert len(machine.seen) == 6 and result.archs == machine.seen
    assert result.fit.weights == pytest.approx(TRUE_MIX[:2], rel=1e-6)
    assert result.fit.intercept_ms == pytest.approx(TRUE_MIX[2], abs=1e-6)
    assert result.fit.loo_mape == pytest.approx(0.0, abs=1e-6)
    table = LatencyTable.load(folder / "cpu-mini.parquet", mini)  # as search, report and validate load it
    others = candidate_archs(mini, RESOLUTIONS, seed=7)[:40]
    np.testing.assert_allclose([table.predict(a) for a in others], [machine.truth(a) for a in others], rtol=1e-6)
    np.testing.assert_allclose(table.predict_many(others), [machine.truth(a) for a in others], rtol=1e-6)
    found = table.prediction
    assert found["samples"] == 6 and [s["device"] for s in found["sources"]] == ["a", "b"]
    assert found["archs"] == [str(a) for a in machine.seen] and len(found["measured_ms"]) == 6


def test_spread_measures_across_the_sources_latency_range(folder, mini):
    """`spread` takes one subnet per slice of the pool ordered by the sources' block sums: the N
    measured span the range, the smallest and the largest slice included."""
    result, machine = _run(folder, mini, samples=6, seed=3)
    pool = candidate_archs(mini, RESOLUTIONS, seed=3)
    logs = np.log([[LatencyTable.load(folder / f"{n}-mini.parquet", mini).raw_ms(x) for n in "ab"] for x in pool])
    ranks = np.argsort(np.argsort(((logs - logs.mean(0)) / logs.std(0)).mean(1), kind="stable"))
    seen = sorted(ranks[pool.index(x)] for x in machine.seen)
    slice_size = len(pool) / 6
    assert [int(r // slice_size) for r in seen] == list(range(6))


def test_fit_mix_never_gives_a_source_a_negative_weight():
    raw = np.array([[1.0, 5.0], [2.0, 4.0], [3.0, 3.0], [4.0, 2.0]])
    fit = fit_mix(raw, raw[:, 0] * 2.0 + 1.0 - 0.1 * raw[:, 1])
    assert min(fit.weights) >= 0.0


def test_a_few_shot_table_is_refused_where_it_cannot_be_made(folder, mini, tmp_path):
    with pytest.raises(LutError, match=r"too few for 2 source table\(s\).*at least 4"):
        _run(folder, mini, samples=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LutError, match="has none measured for space 'mini'"):
        fewshot_profile(load_device("cpu"), mini, samples=6, resolutions=["32x32"], out=empty / "cpu-mini.parquet",
                        measurer=None)  # fmt: skip
    with pytest.raises(LutError, match="it is a table of 'cpu' itself"):
        table = source_table(mini, "cpu", 1.0, 0.0, 0.01)
        table.save(tmp_path / "own.parquet")
        _run(folder, mini, sources=[tmp_path / "own.parquet"])
    with pytest.raises(LutError, match="already holds a table that was not predicted"):
        fewshot_profile(load_device("cpu"), mini, samples=6, resolutions=["32x32"], out=folder / "a-mini.parquet",
                        sources=[folder / "b-mini.parquet"], measurer=None)  # fmt: skip
    assert not (folder / "cpu-mini.parquet").exists()  # nothing half-written by any refusal


def test_a_prediction_is_never_learnt_from_nor_resumed_by_a_full_profile(folder, mini):
    from hwnas.hardware.profiling import profile

    _run(folder, mini)
    with pytest.raises(LutError, match="it is itself a prediction"):
        fewshot_profile(load_device("cpu-torch"), mini, samples=6, resolutions=["32x32"],
                        out=folder / "other" / "t.parquet", sources=[folder / "cpu-mini.parquet"])  # fmt: skip
    with pytest.raises(LutError, match="holds a few-shot prediction, not measurements"):
        profile("cpu", mini, resolutions=["32x32"], out=folder / "cpu-mini.parquet", validate=False)
    again, _ = _run(folder, mini, seed=1)  # a prediction may replace an earlier prediction
    assert again.table.prediction["seed"] == 1


def test_a_predicted_table_is_labelled_wherever_it_is_used(folder, mini):
    """trust (search's line) and validate say PREDICTED, before and after the table is checked."""
    from hwnas.hardware.validation import validate

    result, machine = _run(folder, mini)
    table = result.table
    checked, line = table.trust(RESOLUTIONS)
    assert not checked and line.startswith("PREDICTED (few-shot: 6 subnets measured whole on cpu")
    assert "from the tables of a, b" in line and "not checked on other subnets" in line
    checked = validate(load_device("cpu"), table, samples=8, resolution="32x32", rounds=1, measurer=machine)
    assert checked.predicted_from.startswith("PREDICTED")
    ok, line = table.trust(RESOLUTIONS)
    assert ok and line.startswith("checked against whole subnets: PREDICTED (few-shot")


def test_search_report_and_export_label_a_predicted_table(folder, mini, tmp_path):
    from hwnas.deploy.report import subnet_report
    from hwnas.deploy.verify import table_prediction
    from hwnas.search import run

    _run(folder, mini)
    table = LatencyTable.load(folder / "cpu-mini.parquet", mini)
    result = run(device="cpu", space="mini", budgets=["1000ms"], lut=folder / "cpu-mini.parquet", evaluations=20,
                 proxy="flops", out=tmp_path / "run")  # fmt: skip
    assert any("PREDICTED (few-shot" in w for w in result.warnings)
    best = json.loads((result.folder / "best.json").read_text())
    assert best["search"]["table_predicted"]["cpu"].startswith("PREDICTED")
    report = subnet_report(load_device("cpu"), mini, mini.min(), table=table, passes=1, rounds=1)
    [measure] = [m for m in report.measures if m.name == "latency (table)"]
    assert "PREDICTED (few-shot" in measure.source
    _, note, _ = table_prediction(folder / "cpu-mini.parquet", mini, mini.min(), "saliency")  # export's check
    assert note.startswith(f"{folder / 'cpu-mini.parquet'}, uncalibrated, PREDICTED (few-shot")


@pytest.mark.slow
def test_a_real_runtime_predicted_from_another_through_the_cli(tmp_path, mini):
    """ONNX Runtime's mini table predicted from torch's (both measured for real on this CPU) with
    `hwnas profile --few-shot`: the table holds every block, says what it was predicted from, and
    `lut validate` checks it, saying it is predicted."""
    from tests.cli import run_cli

    lut = tmp_path / "lut"
    run_cli("profile", "--device", "cpu-torch", "--space", "mini", "--resolution", "32x32", "--no-validate",
            "--out", str(lut / "cpu-torch-mini.parquet"))  # fmt: skip
    made = run_cli("profile", "--device", "cpu", "--space", "mini", "--resolution", "32x32", "--few-shot", "5",
                   "--out", str(lut / "cpu-mini.parquet"))  # fmt: skip
    said = " ".join((made.stdout + made.stderr).split())
    assert "PREDICTED (few-shot: 5 subnets measured whole on cpu, every block from the tables of cpu-torch" in said
    assert "x cpu-torch-mini" in said and "a PREDICTED table: `hwnas lut validate" in said
    table = LatencyTable.load(lut / "cpu-mini.parquet", mini)
    assert not table.missing(mini.all_block_signatures(RESOLUTIONS, "saliency"))
    assert table.prediction["sources"] == [{"path": str(lut / "cpu-torch-mini.parquet"), "device": "cpu-torch"}]
    assert np.isfinite(table.predict_many(candidate_archs(mini, RESOLUTIONS, seed=0))).all()
    checked = run_cli("lut", "validate", "--device", "cpu", "--space", "mini", "--lut", str(lut / "cpu-mini.parquet"),
                      "--samples", "8", "--rounds", "2")  # fmt: skip
    assert "the table checked is PREDICTED (few-shot" in " ".join((checked.stdout + checked.stderr).split())
