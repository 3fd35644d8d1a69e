"""Timings that know how sure they are (issue 48): the interval by hand, the table's rows, the
profile that measures until precise, the sentinel that catches a busy stretch, the machine check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.hardware.device import load_device
from hwnas.hardware.doctor import BAND, MAX_WINDOWS, NOISY_CV, SENTINEL, NoisyMachine, Watch, check_machine
from hwnas.hardware.precision import Precision, half_width, interval, statistic_of
from hwnas.hardware.profiling import WATCH_CHUNK, profile
from hwnas.hardware.table import INTERVAL_COLUMNS, LatencyTable
from tests.fake_machine import ScriptedMachine

T_975_1 = 12.706204736  # Student's t, 97.5th percentile, one degree of freedom
T_975_2 = 4.302652730


def test_the_interval_is_students_t_on_the_log_round_medians_by_hand():
    assert half_width([1.0, math.exp(0.1)]) == pytest.approx(T_975_1 * (0.1 / math.sqrt(2)) / math.sqrt(2))
    # logs -0.1, 0, 0.1: sd 0.1, three rounds
    assert half_width([math.exp(-0.1), 1.0, math.exp(0.1)]) == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    low, high = interval([math.exp(-0.1), 1.0, math.exp(0.1)], estimate=2.0)
    h = T_975_2 * 0.1 / math.sqrt(3)
    assert (low, high) == pytest.approx((2.0 * math.exp(-h), 2.0 * math.exp(h)))
    assert interval([3.0]) == (0.0, math.inf)  # one round says nothing of its spread
    assert half_width([2.0, 2.0, 2.0]) == 0.0


def test_a_row_wants_rounds_until_precise_or_capped():
    p = Precision(target=0.03, min_rounds=3, max_rounds=5)
    assert p.wants_round([1.0, 1.0])  # under the minimum, however they agree
    assert not p.wants_round([1.0, 1.0, 1.0])  # precise at the minimum
    assert p.wants_round([1.0, 1.2, 0.9]) and p.wants_round([1.0, 1.2, 0.9, 1.1])
    assert not p.wants_round([1.0, 1.2, 0.9, 1.1, 1.0])  # the cap
    assert not p.precise([1.0, 1.2, 0.9, 1.1, 1.0])


def test_flags_make_exact_rounds_or_a_range():
    assert Precision.from_flags() == Precision()
    assert Precision.from_flags(rounds=2) == Precision(min_rounds=2, max_rounds=2)
    assert Precision.from_flags(rounds=2, max_rounds=9, percent=5) == Precision(target=0.05, min_rounds=2, max_rounds=9)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"percent": 0}, r"--precise-to must be a positive percentage .* got 0%"),
        ({"percent": -3}, "--precise-to must be a positive percentage"),
        ({"percent": float("nan")}, "--precise-to must be a positive percentage"),
        ({"rounds": 0}, "--rounds must be at least 1"),
        ({"rounds": 4, "max_rounds": 3}, r"--max-rounds \(3\) must be at least the rounds every row gets \(4\)"),
        ({"max_s": 0}, "--max-time must be a positive number of seconds"),
    ],
)
def test_bad_precision_settings_are_one_error(flags, message):
    with pytest.raises(HwnasError, match=message):
        Precision.from_flags(**flags)


def test_statistics_of_round_medians_by_hand():
    x = [1.0, 2.0, 4.0, 8.0, 100.0]
    assert statistic_of(x, "median") == 4.0
    assert statistic_of(x, "mean") == pytest.approx(23.0)
    assert statistic_of(x, "geomean") == pytest.approx((1 * 2 * 4 * 8 * 100) ** 0.2)
    assert statistic_of(x, "trimmed") == pytest.approx((2 + 4 + 8) / 3)  # 20% of 5: one cut from each end
    assert statistic_of(x, "low") == 2.0
    with pytest.raises(HwnasError, match="unknown statistic 'max'"):
        statistic_of(x, "max")


def noisy_by_kind(sig, k: int) -> float:
    """MBConv blocks alternate 1.0 and 1.3 ms (never precise to 3%); every other block is steady."""
    return (1.0, 1.3)[k % 2] if sig.op == "mbconv" else 0.5


def test_profile_measures_until_precise_and_flags_the_rows_at_the_cap(tmp_path, mini):
    machine = ScriptedMachine(noisy_by_kind)
    path = tmp_path / "t.parquet"
    result = profile(load_device("cpu"), mini, resolutions=["32x32"], out=path, measurer=machine, validate=False,
                     precision=Precision(min_rounds=3, max_rounds=5))  # fmt: skip
    table = LatencyTable.load(path, mini)
    rows = table.rows.set_index("key")
    noisy = rows["op"] == "mbconv"
    assert noisy.any() and (~noisy).any()
    assert (rows.loc[~noisy, "rounds"] == 3).all() and rows.loc[~noisy, "precise"].all()
    assert (rows.loc[noisy, "rounds"] == 5).all() and not rows.loc[noisy, "precise"].any()
    assert result.imprecise == int(noisy.sum()) == len(table.imprecise())
    # the stored interval is the one computed from the round medians kept beside it
    key = rows.index[noisy][0]
    values = rows.loc[key, "round_medians_ms"]
    assert rows.loc[key, "geomean_ms"] == pytest.approx(math.exp(np.mean(np.log(values))))  # the default statistic
    low, high = interval(values, estimate=rows.loc[key, "geomean_ms"])
    assert (rows.loc[key, "ci_low_ms"], rows.loc[key, "ci_high_ms"]) == pytest.approx((low, high))
    assert table.meta["timing_precision"]["target"] == 0.03 and table.meta["machine_check"]["noisy"] is False
    # a rerun with the same settings has nothing left to measure; a looser target flags nothing
    again = profile(load_device("cpu"), mini, resolutions=["32x32"], out=path, measurer=machine, validate=False,
                    precision=Precision(min_rounds=3, max_rounds=5))  # fmt: skip
    assert again.measured == 0
    loose = profile(load_device("cpu"), mini, resolutions=["32x32"], out=path, measurer=machine, validate=False,
                    precision=Precision(target=0.5, min_rounds=3, max_rounds=5))  # fmt: skip
    assert loose.measured == 0 and loose.imprecise == 0


def test_a_chunk_measured_while_the_sentinel_was_busy_is_measured_again(tmp_path, mini):
    """The sentinel is quiet (0.2 ms) except for its 12th-14th timings after the check (0.5 ms): the
    chunks around them are measured again, the wait is said, the busy values never reach the table
    and the trace holds every sentinel timing."""
    busy = range(MAX_WINDOWS + 12, MAX_WINDOWS + 15)  # a fake machine fills the check's windows at once
    machine = ScriptedMachine(lambda sig, k: 0.5, sentinel_ms=lambda n: 0.5 if n in busy else 0.2)
    said = []
    path = tmp_path / "t.parquet"
    profile(load_device("cpu"), mini, resolutions=["32x32"], out=path, measurer=machine, validate=False,
            precision=Precision.fixed(1), on_wait=said.append)  # fmt: skip
    table = LatencyTable.load(path, mini)
    watch = table.meta["watch"]
    assert watch["rejected_chunks"] >= 1 and said and "the machine is busy" in said[0]
    assert sum(1 for _, ms in watch["trace"] if ms == 0.5) == len(busy)
    measured = sum(machine.counts.values())
    assert measured > len(table)  # some blocks measured twice
    assert (table.rows["rounds"] == 1).all()  # ... but each kept once
    assert watch["quiet_ms"] == pytest.approx(0.2) and 0.2 * (1 + BAND) < 0.5


def test_strict_stops_when_the_machine_stays_busy(tmp_path, mini):
    machine = ScriptedMachine(lambda sig, k: 0.5, sentinel_ms=lambda n: 0.9)  # busy from now on
    watch = Watch(machine, strict=True, wait_s=0.6)
    watch.seed([0.2] * 5)
    assert watch.keep(0.2)
    assert not watch.keep(0.9)
    with pytest.raises(NoisyMachine, match=r"the machine is busy: .* stopped \(--strict\)"):
        watch.settle()
    assert machine.sentinels >= 1 and watch.waited_s >= 0.6
    patient = Watch(ScriptedMachine(lambda sig, k: 0.5, sentinel_ms=lambda n: 0.9 if n < 2 else 0.2), wait_s=30)
    patient.seed([0.2] * 5)
    patient.settle()  # quiet again at its third look: waits about a second, then goes on
    assert 0.5 <= patient.waited_s < 30


def test_the_machine_check_measures_the_sentinels_noise():
    steady = check_machine(ScriptedMachine(lambda sig, k: 0.5), seconds=0.05)
    # the OS findings are this host's own (other processes may be busy here), the noise is the fake's
    assert steady.noise_cv == pytest.approx(0.0, abs=1e-12) and steady.sentinel_ms == 0.2
    assert steady.noisy == bool(steady.problems) and "varies 0.0% between windows" in steady.line()
    assert set(steady.findings) >= {"other processes", "steal", "governor", "boost", "thermal throttling", "power"}
    jumpy = check_machine(ScriptedMachine(lambda sig, k: 0.5, sentinel_ms=lambda n: (0.2, 0.3)[n % 2]), seconds=0.05)
    windows = np.array(jumpy.windows_ms)
    assert jumpy.noise_cv == pytest.approx(windows.std(ddof=1) / windows.mean()) and jumpy.noise_cv > NOISY_CV
    assert jumpy.noisy and jumpy.line().startswith("machine NOISY")


def test_strict_refuses_a_noisy_machine_before_writing_anything(tmp_path, mini):
    machine = ScriptedMachine(lambda sig, k: 0.5, sentinel_ms=lambda n: (0.2, 0.3)[n % 2])
    with pytest.raises(NoisyMachine, match=r"machine NOISY.*stopped before measuring \(--strict\)"):
        profile(load_device("cpu"), mini, resolutions=["32x32"], out=tmp_path / "t.parquet", measurer=machine,
                strict=True)  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_a_table_of_the_last_schema_gets_its_intervals_from_its_round_medians(tmp_path, mini):
    import json

    import pandas as pd

    machine = ScriptedMachine(noisy_by_kind)
    path = tmp_path / "t.parquet"
    profile(load_device("cpu"), mini, resolutions=["32x32"], out=path, measurer=machine, validate=False,
            precision=Precision.fixed(3), watch=False)  # fmt: skip
    rows = pd.read_parquet(path)
    rows.drop(columns=INTERVAL_COLUMNS).to_parquet(path, index=False)
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "schema_version": 4}))
    old = LatencyTable.load(path, mini).rows
    np.testing.assert_allclose(old["ci_high_ms"], rows["ci_high_ms"])
    assert old["precise"].tolist() == rows["precise"].tolist()


def test_the_sentinel_is_measured_once_per_chunk(tmp_path, mini):
    machine = ScriptedMachine(lambda sig, k: 0.5)
    profile(load_device("cpu"), mini, resolutions=["32x32"], out=tmp_path / "t.parquet", measurer=machine,
            validate=False, precision=Precision.fixed(1))  # fmt: skip
    blocks = len(machine.counts)
    check = machine.sentinels - math.ceil(blocks / WATCH_CHUNK)
    assert check >= 3 and SENTINEL.key not in machine.counts


def two_round_table(space, *, spread: float = 0.1):
    """A synthetic table whose every row has two rounds, c and c x e^spread: each row's relative
    standard error on the log scale is spread / 2 (sd of [0, spread] over sqrt 2)."""
    from hwnas.hardware.backends.base import Timing

    table = LatencyTable.new(
        device={"name": "synthetic", "threads": 1}, versions={}, space=space, task="saliency",
        resolutions=list(space.resolutions), overhead=Timing(0.01, 0.01, 0.01, 0.01, 0.0, 10), protocol={},
    )  # fmt: skip
    for sig in space.all_block_signatures(list(space.resolutions), "saliency"):
        cost = 0.02 + sig.flops() / 1e9
        for ms in (cost, cost * math.exp(spread)):
            table.record(sig, Timing(ms, ms, ms, ms, 0.0, 10))
    return table


def test_a_prediction_carries_its_interval_by_hand(mini):
    table = two_round_table(mini)
    arch = mini.max()
    own = [table.rows_by_key(s.key)["geomean_ms"] - 0.01 for s in mini.block_signatures(arch)]
    estimate = sum(own) + 0.01
    spread = 0.05 * math.sqrt(sum(c * c for c in own)) / estimate  # independent blocks, 5% each
    found = table.predict_interval(arch)
    assert found.estimate_ms == pytest.approx(estimate)
    assert (found.low_ms, found.high_ms) == pytest.approx(
        (estimate * math.exp(-1.959964 * spread), estimate * math.exp(1.959964 * spread)), rel=1e-6
    )
    assert found.contains(estimate) and not found.contains(found.high_ms * 1.01)
    # the calibration's scatter on whole subnets adds to the blocks' own, and a slope scales them
    from hwnas.hardware.table import Calibration

    table.set_calibration(arch.resolution, Calibration(2.0, 0.0, 10))
    table.meta["validation"] = {"spread": {f"{arch.resolution[0]}x{arch.resolution[1]}": 0.1}}
    wider = table.predict_interval(arch)
    assert wider.estimate_ms == pytest.approx(2 * estimate)
    both = math.sqrt(spread**2 + 0.1**2)  # 2 x the block error over 2 x the estimate: the same relative error
    assert wider.high_ms == pytest.approx(2 * estimate * math.exp(1.959964 * both), rel=1e-6)


def test_upper_bounds_are_vectorised_and_grow_with_the_confidence(mini):
    table = two_round_table(mini)
    rng = np.random.default_rng(0)
    archs = [mini.min(), mini.max(), *(mini.sample(rng) for _ in range(20))]
    estimate = table.predict_many(archs)
    np.testing.assert_allclose(table.upper_many(archs, confidence=0.5), estimate)
    upper = table.upper_many(archs, confidence=0.9)
    by_hand = [
        p.estimate_ms * math.exp(1.281552 / 1.959964 * math.log(p.high_ms / p.estimate_ms))
        for p in (table.predict_interval(a) for a in archs)
    ]
    np.testing.assert_allclose(upper, by_hand, rtol=1e-6)
    assert (table.upper_many(archs, confidence=0.99) > upper).all() and (upper > estimate).all()


def test_a_search_with_confidence_keeps_only_subnets_whose_bound_meets_the_budget(mini):
    from hwnas.search.accuracy import ProxyEvaluator
    from hwnas.search.budget import parse_budgets
    from hwnas.search.driver import search
    from hwnas.search.objectives import Costs

    table = two_round_table(mini, spread=0.3)
    plain = Costs(mini, task="saliency", table=table)
    sure = Costs(mini, task="saliency", table=table, confidence=0.9)
    rng = np.random.default_rng(1)
    x = np.array([mini.encode(mini.sample(rng)) for _ in range(200)])
    budget = float(np.median(plain("latency", x)))
    between = (plain("latency", x) <= budget) & (sure("latency", x) > budget)
    assert between.any()  # subnets whose estimate meets the budget but whose bound does not
    budgets = parse_budgets([f"{budget:.6f}ms"])
    archive = search(mini, accuracy=ProxyEvaluator("flops", sure, mini), costs=sure, budgets=budgets,
                     algorithm="random", evaluations=24)  # fmt: skip
    chosen = archive.pick(budgets)
    assert table.upper_many([chosen.arch], confidence=0.9)[0] <= budget
    assert chosen.values["latency"] == pytest.approx(table.upper_many([chosen.arch], confidence=0.9)[0])


def test_a_budget_is_kept_broken_or_undecided_by_the_measurements_interval():
    from hwnas.deploy.verify import Speed, budget_line, budget_verdict, measured_interval

    assert budget_verdict(9.0, 9.8, 10.0) == "keeps"
    assert budget_verdict(10.2, 11.0, 10.0) == "breaks"
    assert budget_verdict(9.5, 10.5, 10.0) == "undecided"
    line = budget_line("cpu", (9.9, 9.5, 10.5), 10.0, 9.0, "lut/cpu-mini.parquet")
    assert "UNDECIDED" in line and "(95%: 9.500-10.500)" in line and "BREAKS" not in line
    # three rounds of 1.0, 1.1 and 0.9 ms: the median and Student's t on their logs
    per_round = np.array([[1.0], [1.1], [0.9]])
    figure, low, high = measured_interval(per_round, "median")
    assert figure == 1.0 and (low, high) == pytest.approx(interval([1.0, 1.1, 0.9], estimate=1.0))
    speed = Speed("cpu", figure, "median", 3, 0.8, "t", 1.2, low, high, 0.7, 0.9)
    assert speed.within_table_interval is False and "OUTSIDE the table's interval" in speed.line()
    assert speed.verdict == "undecided" and speed.within_budget is None  # 1.2 ms lies inside 0.79-1.26


class JitteryMachine:
    """A fake measurer standing for a machine whose whole subnets run 1.05x the table, each round
    `jitter` slower or faster in turn: a line would gain about 5 points, less than the
    measurements' own error at a jitter of 20%."""

    where = "local"

    def __init__(self, table, jitter: float):
        self.table, self.jitter = table, jitter

    def blocks(self, sigs, protocol):
        from tests.fake_machine import timing

        for sig in sigs:
            yield sig, timing(0.2)

    def archs(self, space, archs, task, *, num_classes=1000, rounds, statistic, protocol, progress):
        truth = np.array([1.05 * self.table.raw_ms(a) for a in archs])
        factors = np.array([(1 + self.jitter) if r % 2 else (1 - self.jitter) for r in range(rounds)])
        return factors[:, None] * truth[None, :]


@pytest.mark.parametrize(("jitter", "stored"), [(0.2, False), (0.0, True)])
def test_a_line_within_the_measurements_own_error_is_not_stored(mini, jitter, stored):
    from hwnas.hardware.validation import validate
    from tests.test_lut import synthetic_table

    table = synthetic_table(mini, resolutions=[(32, 32)])
    result = validate(load_device("cpu"), table, samples=12, resolution=(32, 32), rounds=4,
                      measurer=JitteryMachine(table, jitter))  # fmt: skip
    [fit] = result.fits
    assert fit.applied is stored and fit.too_noisy is not stored
    if not stored:
        assert fit.noise_pct > 10 and "too noisy to decide" in fit.refusal and table.calibration_at((32, 32)) is None
    assert table.meta["validation"]["spread"]["32x32"] >= 0
