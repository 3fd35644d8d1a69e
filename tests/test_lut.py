"""LatencyTable: file round-trip, damaged and foreign files, prediction by hand, vectorised lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.backends.base import Timing
from hwnas.lut import Calibration, LatencyTable, LutError, sidecar_path
from hwnas.space import SearchSpace


def synthetic_table(space: SearchSpace, *, task="saliency", resolutions=None, skip=0, overhead=0.01) -> LatencyTable:
    """A table whose block costs are known functions of the signature (no measurement)."""
    resolutions = list(space.resolutions) if resolutions is None else resolutions
    table = LatencyTable.new(
        device={"name": "synthetic", "threads": 1},
        versions={"runtime": "1.0"},
        space=space,
        task=task,
        resolutions=resolutions,
        overhead=Timing(overhead, overhead, overhead, overhead, 0.0, 10),
        protocol={},
    )
    for i, sig in enumerate(space.all_block_signatures(resolutions, task)):
        if i >= skip:
            cost = overhead + sig.flops() / 1e9 + 0.001 * sig.kernel
            table.record(sig, Timing(cost, cost * 1.1, cost * 0.9, cost, 0.01, 30))
    return table


@pytest.fixture(scope="module")
def mini_table(mini):
    return synthetic_table(mini)


def test_predict_is_block_sum_with_one_overhead(mini_table, mini):
    arch = mini.max()
    sigs = mini.block_signatures(arch)
    by_hand = sum(s.flops() / 1e9 + 0.001 * s.kernel for s in sigs) + 0.01
    assert mini_table.predict(arch) == pytest.approx(by_hand, rel=1e-12)
    mini_table.calibration = Calibration(1.5, 0.2, 10)
    assert mini_table.predict(arch) == pytest.approx(1.5 * by_hand + 0.2, rel=1e-12)
    assert mini_table.predict(arch, calibrated=False) == pytest.approx(by_hand, rel=1e-12)
    mini_table.calibration = None


@pytest.mark.parametrize("task", ["saliency", "classification"])
@pytest.mark.parametrize("preset", ["mini", "alphanet"])
def test_predict_many_equals_predict(preset, task):
    space = SearchSpace.load(preset)
    table = synthetic_table(space, task=task)
    rng = np.random.default_rng(0)
    archs = [space.min(), space.max()] + [space.sample(rng) for _ in range(200)]
    one_by_one = np.array([table.predict(a) for a in archs])
    np.testing.assert_allclose(table.predict_many(archs), one_by_one, rtol=1e-12)
    encoded = np.stack([space.encode(a) for a in archs])
    np.testing.assert_allclose(table.predict_many(encoded), one_by_one, rtol=1e-12)


def test_missing_entries_are_named_never_zero(mini):
    table = synthetic_table(mini, resolutions=[(32, 32)])
    arch = mini.min()  # 32x32 is covered
    assert table.predict(arch) > 0
    big = mini.max()  # 64x64 is not in the table
    with pytest.raises(LutError, match=r"no entry for \d+ block\(s\): .*_o32x32.*profile them"):
        table.predict(big)
    with pytest.raises(LutError, match="no entry for block"):
        table.predict_many([arch, big])


def test_save_load_roundtrip(tmp_path, mini_table, mini):
    path = mini_table.save(tmp_path / "t.parquet")
    loaded = LatencyTable.load(path, mini)
    assert len(loaded) == len(mini_table) and loaded.meta["space_digest"] == mini.digest()
    assert loaded.predict(mini.max()) == mini_table.predict(mini.max())
    assert json.loads(sidecar_path(path).read_text())["schema_version"] == 4


def test_a_schema_3_table_loads_without_its_frm_rows(tmp_path, mini):
    """Schema 3 timed FocusNet's FRM with its 1x1 conv after the upsampling: those rows are dropped
    (named as missing, for `hwnas profile` to measure again); every other row is kept."""
    table = synthetic_table(mini, task="sod+focus")
    path = table.save(tmp_path / "t.parquet")
    meta = json.loads(sidecar_path(path).read_text())
    sidecar_path(path).write_text(json.dumps({**meta, "schema_version": 3}))
    loaded = LatencyTable.load(path, mini)
    frm = int((table.rows["op"] == "frm").sum())
    assert frm > 0 and len(loaded) == len(table) - frm and not (loaded.rows["op"] == "frm").any()
    with pytest.raises(LutError, match=r"no entry for 1 block\(s\): frm_.*profile them with `hwnas profile`"):
        loaded.predict(mini.max())


def test_tables_from_before_the_authors_blocks_are_refused_in_one_line(tmp_path, mini_table, mini):
    """Version 2 rows priced MBConv blocks without their shortcuts and the old decoder: refused."""
    path = mini_table.save(tmp_path / "t.parquet")
    meta = json.loads(sidecar_path(path).read_text())
    sidecar_path(path).write_text(json.dumps({**meta, "schema_version": 2}))
    with pytest.raises(LutError, match=r"schema version 2 \(from before the authors' blocks.*rebuild it") as info:
        LatencyTable.load(path, mini)
    assert "\n" not in str(info.value)


def test_truncated_table_is_refused(tmp_path, mini_table, mini):
    path = mini_table.save(tmp_path / "t.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LutError, match="damaged or truncated"):
        LatencyTable.load(path, mini)


def test_other_schema_version_is_refused(tmp_path, mini_table, mini):
    path = mini_table.save(tmp_path / "t.parquet")
    meta = json.loads(sidecar_path(path).read_text())
    meta["schema_version"] = 0
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.raises(LutError, match="schema version 0; this hwnas reads version 3, 4"):
        LatencyTable.load(path, mini)


def test_table_of_another_space_is_refused(tmp_path, mini_table, alphanet):
    path = mini_table.save(tmp_path / "t.parquet")
    with pytest.raises(LutError, match="was built for space 'mini'"):
        LatencyTable.load(path, alphanet)


def test_missing_files(tmp_path, mini):
    with pytest.raises(LutError, match="does not exist; build it with `hwnas profile`"):
        LatencyTable.load(tmp_path / "none.parquet", mini)


def test_compatibility_warnings(mini_table):
    notes = mini_table.compatibility_warnings({"threads": 4}, {"runtime": "2.0"})
    assert notes == [
        "table was measured with threads=1, not 4",
        "table was measured with runtime 1.0, this host has 2.0",
    ]


def test_calibration_fit_recovers_a_line():
    raw = np.array([1.0, 2.0, 3.0, 4.0])
    cal = Calibration.fit(raw, 0.9 * raw + 0.3)
    assert cal.slope == pytest.approx(0.9) and cal.intercept_ms == pytest.approx(0.3) and cal.fitted_on == 4


def test_repeatability_compares_the_two_halves_of_the_rounds():
    from hwnas.profiler import repeatability

    # 4 rounds x 4 subnets: first half ranks them 1<2<3<4, second half 1<3<2<4 (one swap: tau 4/6)
    per_round = np.array([[1.0, 2.0, 3.0, 4.0], [1.2, 2.2, 3.2, 4.2], [1.0, 3.1, 2.9, 4.0], [1.0, 3.1, 2.9, 4.0]])
    result = repeatability(per_round, "median")
    assert result.n == 4
    assert result.kendall_tau == pytest.approx(4 / 6)
    # medians of the halves: [1.1, 2.1, 3.1, 4.1] vs [1.0, 3.1, 2.9, 4.0] -> errors relative to the second
    first, second = np.array([1.1, 2.1, 3.1, 4.1]), np.array([1.0, 3.1, 2.9, 4.0])
    assert result.mape == pytest.approx(np.mean(np.abs(first - second) / second) * 100)
    assert repeatability(per_round[:1], "median") is None
    assert repeatability(per_round, "min").kendall_tau == pytest.approx(4 / 6)


class DisagreeingMachine:
    """A fake measurer standing for a machine whose end-to-end timings of the calibration half run
    2x the table while the held-out half match it: the fitted line makes held-out predictions worse."""

    where = "local"

    def __init__(self, holdout):
        self.holdout = holdout

    def archs(self, space, archs, task, *, rounds, statistic, protocol, progress):
        raw = np.array([self.table.raw_ms(a) for a in archs])
        return np.tile(np.where(self.holdout, raw, 2 * raw + 0.3 * np.arange(len(raw))), (rounds, 1))


def test_a_calibration_that_worsens_held_out_error_is_not_stored(mini):
    from hwnas.devices import load_device
    from hwnas.profiler import validate

    table = synthetic_table(mini, resolutions=[(32, 32)])
    samples, seed = 8, 0
    holdout = np.random.default_rng(seed + 1).permutation(samples) % 2 == 1  # validate()'s split
    machine = DisagreeingMachine(holdout)
    machine.table = table
    result = validate(load_device("cpu"), table, samples=samples, seed=seed, resolution=(32, 32), rounds=2,
                      measurer=machine)  # fmt: skip
    assert result.holdout_before.mape == pytest.approx(0.0, abs=1e-9)  # raw sums match the held-out half
    assert result.holdout_after.mape > 10 and not result.applied
    assert table.calibration is None and table.meta["validation"]["calibration_applied"] is False
    arch = mini.parse(result.archs[0])
    assert table.predict(arch) == pytest.approx(table.raw_ms(arch))
