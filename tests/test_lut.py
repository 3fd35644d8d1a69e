"""LatencyTable: file round-trip, damaged and foreign files, prediction by hand, vectorised lookup."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hwnas.hardware.backends.base import Timing
from hwnas.hardware.table import INTERVAL_COLUMNS, SCHEMA_VERSION, Calibration, LatencyTable, LutError, sidecar_path
from hwnas.space import SearchSpace
from tests.fake_machine import QuietSentinel


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
    mini_table.set_calibration(arch.resolution, Calibration(1.5, 0.2, 10))
    assert mini_table.predict(arch) == pytest.approx(1.5 * by_hand + 0.2, rel=1e-12)
    assert mini_table.predict(arch, calibrated=False) == pytest.approx(by_hand, rel=1e-12)
    mini_table.set_calibration(arch.resolution, None)
    assert mini_table.meta["calibration"] is None


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
    assert json.loads(sidecar_path(path).read_text())["schema_version"] == SCHEMA_VERSION == 5


def as_schema(path, version: int):
    """The table at `path` rewritten as an older schema wrote it (before issue 48's interval columns)."""
    import pandas as pd

    pd.read_parquet(path).drop(columns=INTERVAL_COLUMNS).to_parquet(path, index=False)
    meta = json.loads(sidecar_path(path).read_text())
    sidecar_path(path).write_text(json.dumps({**meta, "schema_version": version}))
    return path


def test_a_schema_3_table_loads_without_its_frm_rows(tmp_path, mini):
    """Schema 3 timed FocusNet's FRM with its 1x1 conv after the upsampling: those rows are dropped
    (named as missing, for `hwnas profile` to measure again); every other row is kept."""
    table = synthetic_table(mini, task="sod+focus")
    path = as_schema(table.save(tmp_path / "t.parquet"), 3)
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


@pytest.mark.slow
def test_calibration_fit_recovers_a_line():
    raw = np.array([1.0, 2.0, 3.0, 4.0])
    cal = Calibration.fit(raw, 0.9 * raw + 0.3)
    assert cal.slope == pytest.approx(0.9) and cal.intercept_ms == pytest.approx(0.3) and cal.fitted_on == 4


def test_repeatability_compares_the_two_halves_of_the_rounds():
    from hwnas.hardware.validation import repeatability

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


class DisagreeingMachine(QuietSentinel):
    """A fake measurer standing for a machine whose end-to-end timings of the fitting half run 2x
    the table (and agree with each other) while the held-out half match the table."""

    where = "local"

    def __init__(self, table, held):
        self.table, self.held = table, held

    def archs(self, space, archs, task, *, num_classes=1000, rounds, statistic, protocol, progress):
        raw = np.array([self.table.raw_ms(a) for a in archs])
        return np.tile(np.where(self.held, raw, 2 * raw), (rounds, 1))


def test_the_held_out_half_decides_nothing_and_reports_what_is_stored(mini):
    """Leave-one-out on the fitting half says a line helps, so it is stored; the held-out half, which
    the line fits badly, is reported through that stored line (not through raw sums it beat)."""
    from hwnas.hardware.device import load_device
    from hwnas.hardware.validation import fitting_split, validate, validation_archs

    table = synthetic_table(mini, resolutions=[(32, 32)])
    samples, seed = 8, 0
    raw = np.array([table.raw_ms(a) for a in validation_archs(mini, samples, seed, [(32, 32)])])
    _, held = fitting_split(raw, np.random.default_rng(seed + 1))  # validate()'s split, as it draws it
    result = validate(load_device("cpu"), table, samples=samples, seed=seed, resolution=(32, 32), rounds=2,
                      measurer=DisagreeingMachine(table, np.isin(np.arange(samples), held)))  # fmt: skip
    [fit] = result.fits
    assert np.flatnonzero(result.holdout).tolist() == held.tolist()
    assert fit.applied and fit.decided_on[1] < 1e-9 < fit.decided_on[0]  # leave-one-out: the 2x line is exact
    assert result.holdout_before.mape == pytest.approx(0.0, abs=1e-9)  # raw sums match the held-out half
    assert fit.after.mape == pytest.approx(100.0) and result.holdout_after == fit.after  # the stored line's
    assert table.calibration_at((32, 32)).slope == pytest.approx(2.0)


def test_the_splits_are_disjoint_and_the_extremes_fit_the_line():
    from hwnas.hardware.validation import fitting_split

    rng = np.random.default_rng(0)
    for n in (4, 5, 8, 31, 64):
        for _ in range(20):
            raw = rng.uniform(1, 10, n)
            fitting, held = fitting_split(raw, rng)
            assert set(fitting).isdisjoint(held) and sorted([*fitting, *held]) == list(range(n))
            assert {int(np.argmin(raw)), int(np.argmax(raw))} <= set(fitting.tolist()) and len(held) == n // 2


def test_a_share_is_reported_with_its_count_and_95_percent_interval():
    from hwnas.hardware.validation import Fidelity, share_interval

    assert share_interval(32, 32) == pytest.approx((0.8928, 1.0), abs=1e-4)  # Wilson, as scipy's binomtest
    assert share_interval(31, 32) == pytest.approx((0.8425, 0.9945), abs=1e-4)
    f = Fidelity(32, 3.0, 0.84375, 31 / 32, 0.7, 0.8)
    assert f.share_text(f.within_10) == "97% (31 of 32, 84-99%)"


class FlatMachine(QuietSentinel):
    """A fake measurer standing for a machine where every subnet takes about 10 ms whatever its
    blocks (the whole run dominated by something fixed), a little less for the bigger ones."""

    where = "local"

    def archs(self, space, archs, task, *, num_classes=1000, rounds, statistic, protocol, progress):
        raw = np.array([self.table.raw_ms(a) for a in archs])
        return np.tile(10.0 - 0.01 * raw, (rounds, 1))


def test_a_line_that_does_not_rise_with_the_block_sum_is_never_stored(mini):
    """Fitted exactly (held-out MAPE 0), a falling line would still rank every subnet backwards."""
    from hwnas.hardware.device import load_device
    from hwnas.hardware.validation import validate

    table = synthetic_table(mini, resolutions=[(32, 32)])
    machine = FlatMachine()
    machine.table = table
    result = validate(load_device("cpu"), table, samples=8, seed=0, resolution=(32, 32), rounds=2, measurer=machine)
    [fit] = result.fits
    assert fit.calibration.slope == pytest.approx(-0.01) and fit.decided_on[1] < 1e-6 < fit.decided_on[0]
    assert not fit.applied and "slope -0.0100 is not positive" in fit.refusal
    assert table.calibration_at((32, 32)) is None


def test_each_resolution_predicts_through_its_own_line():
    """Lines are kept per resolution: predict and predict_many apply each arch's own, a resolution
    without one predicts the raw sum, and the lines survive a save and a load."""
    space = SearchSpace.load("alphanet")
    table = synthetic_table(space)
    small, large = space.resolutions
    table.set_calibration(small, Calibration(1.2, 0.1, 10))
    rng = np.random.default_rng(1)
    archs = [replace(space.sample(rng), resolution=r) for r in (small, large) for _ in range(20)]
    raw = np.array([table.raw_ms(a) for a in archs])
    expected = np.where([a.resolution == small for a in archs], 1.2 * raw + 0.1, raw)
    np.testing.assert_allclose(table.predict_many(archs), expected, rtol=1e-12)
    table.set_calibration(large, Calibration(0.8, 0.5, 10))
    expected = np.where([a.resolution == small for a in archs], 1.2 * raw + 0.1, 0.8 * raw + 0.5)
    np.testing.assert_allclose([table.predict(a) for a in archs], expected, rtol=1e-12)
    np.testing.assert_allclose(table.predict_many(archs), expected, rtol=1e-12)
    bound = table.lower_bound()
    assert bound <= expected.min() and bound == min(table.lower_bound(allowed_resolutions=[i]) for i in (0, 1))


def test_a_table_calibrated_with_one_line_keeps_it_until_a_resolution_gets_its_own(tmp_path):
    """Sidecars written before lines were kept per resolution hold one line for all resolutions."""
    space = SearchSpace.load("alphanet")
    table = synthetic_table(space)
    table.meta["calibration"] = {"slope": 1.5, "intercept_ms": 0.2, "fitted_on": 10, "fitted": "then"}
    path = table.save(tmp_path / "t.parquet")
    table = LatencyTable.load(path, space)
    small, large = space.resolutions
    arch = replace(space.max(), resolution=large)
    assert table.predict(arch) == pytest.approx(1.5 * table.raw_ms(arch) + 0.2)
    table.set_calibration(small, Calibration(1.1, 0.0, 8))
    assert table.predict(arch) == pytest.approx(table.raw_ms(arch))  # the old line is gone, large is raw
    reloaded = LatencyTable.load(table.save(path), space)
    assert reloaded.calibrations == {"256x192": Calibration(1.1, 0.0, 8)}


class TwoSpeedMachine(QuietSentinel):
    """A fake measurer (no timing at all) standing for a device whose end-to-end time is a different
    line of the block sum at each resolution: 1.2 x raw + 0.1 at 256x192, 0.8 x raw + 0.5 at 384x288."""

    where = "local"
    lines = {(256, 192): (1.2, 0.1), (384, 288): (0.8, 0.5)}

    def __init__(self, table):
        self.table, self.seen = table, []

    def archs(self, space, archs, task, *, num_classes=1000, rounds, statistic, protocol, progress):
        self.seen = list(archs)
        times = [self.lines[a.resolution][0] * self.table.raw_ms(a) + self.lines[a.resolution][1] for a in archs]
        return np.tile(times, (rounds, 1))


def test_validate_fits_one_line_per_resolution_the_table_profiled():
    from hwnas.hardware.device import load_device
    from hwnas.hardware.validation import validate

    space = SearchSpace.load("alphanet")
    table = synthetic_table(space)
    table.meta["calibration"] = {"slope": 9.0, "intercept_ms": 9.0, "fitted_on": 4, "fitted": "then"}
    machine = TwoSpeedMachine(table)
    result = validate(load_device("cpu"), table, samples=10, seed=0, rounds=1, measurer=machine)
    assert [a.resolution for a in machine.seen] == [(256, 192)] * 5 + [(384, 288)] * 5
    assert machine.seen[0] == replace(space.min(), resolution=(256, 192))  # min and max at each resolution
    assert machine.seen[6] == replace(space.max(), resolution=(384, 288))
    for fit in result.fits:
        slope, intercept = TwoSpeedMachine.lines[tuple(int(v) for v in fit.resolution.split("x"))]
        assert fit.calibration.slope == pytest.approx(slope) and fit.calibration.intercept_ms == pytest.approx(
            intercept
        )
        assert fit.applied and fit.after.mape == pytest.approx(0.0, abs=1e-9)
        assert sum(result.holdout[i] for i, r in enumerate(result.resolutions) if r == fit.resolution) in (2, 3)
    assert set(table.calibrations) == {"256x192", "384x288"}  # the old all-resolution line is replaced
    assert result.holdout_after.mape == pytest.approx(0.0, abs=1e-9) and result.holdout_before.mape > 1
    with pytest.raises(LutError, match="at least 4 per resolution"):
        validate(load_device("cpu"), table, samples=6, seed=0, rounds=1, measurer=machine)


def test_a_table_of_one_resolution_bounds_and_prices_searches_there(mini):
    """A table profiled at 48x48 only (not the space's smallest resolution) bounds a search there."""
    from hwnas.search import Costs

    table = synthetic_table(mini, resolutions=[(48, 48)])
    costs = Costs(mini, task="saliency", table=table)
    at48 = replace(mini.min(), resolution=(48, 48))
    assert costs.lower_bound("latency", [1]) <= table.predict(at48)
    with pytest.raises(LutError, match="no entry for block"):
        costs.lower_bound("latency", [0])
