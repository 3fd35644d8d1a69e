"""Few-shot latency for a new device (`hwnas lut transfer`, `hwnas.hardware.transfer`): what it
refuses, which cells it measures, that it recovers a device the sources explain, and the file it
writes, labelled as predicted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

from hwnas.hardware.transfer import Regression, Settings, TransferError, check, choose_cells, fewshot
from hwnas.space.nb201 import NB201Space, packaged_benchmark, parse_cell
from tests.cli import one_error_line, run_cli


def _cells(ops=("none", "skip_connect", "nor_conv_3x3")) -> tuple[NB201Space, np.ndarray]:
    space = NB201Space(ops=ops)
    x = np.array(np.unravel_index(np.arange(space.size()), (len(ops),) * space.n_var)).T
    return space, x


def _devices(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` devices whose latency adds a cost per edge and operation (each device its own costs) and a
    little noise: the structure the predictor assumes, known here by construction."""
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.1, 2.0, (n, x.shape[1], int(x.max()) + 1))
    base = np.stack([c[np.arange(x.shape[1]), x].sum(1) for c in costs], axis=1)
    return 1.0 + base * rng.uniform(0.98, 1.02, base.shape)


def test_a_table_that_cannot_be_made_is_refused_in_one_line():
    with pytest.raises(TransferError, match="needs at least 2 measured ones .* got 1"):
        check(10, 729, 1)
    with pytest.raises(TransferError, match="--samples must be at least 2 .* got 1"):
        check(1, 729, 4)
    with pytest.raises(TransferError, match="fewer than the 729 cells, got 729"):
        check(729, 729, 4)
    space, x = _cells()
    lat = dict(zip("abc", _devices(x, 3).T, strict=True))
    with pytest.raises(TransferError, match="no latency column for device 'z'"):
        fewshot(space.features(x), lat, "z", samples=5)
    with pytest.raises(TransferError, match="unknown cell choice 'best'; allowed: design, spread, random"):
        fewshot(space.features(x), lat, "a", samples=5, choice="best")
    with pytest.raises(TransferError, match="unknown cell choice 'design'; allowed: spread, random"):
        choose_cells(_devices(x, 3), 5, 0, "design")  # a design needs the prior, not only the sources


def test_spread_takes_one_cell_from_each_slice_of_the_sources_latency_range():
    space, x = _cells()
    sources = _devices(x, 3)
    logs = np.log(sources)
    rank = np.argsort(np.argsort(((logs - logs.mean(0)) / logs.std(0)).mean(1), kind="stable"), kind="stable")
    for seed in range(5):
        chosen = choose_cells(sources, 9, seed, "spread")
        assert sorted((rank[chosen] * 9) // len(x)) == list(range(9))  # one in each ninth of the order
        assert len(set(choose_cells(sources, 9, seed, "random"))) == 9
    assert not np.array_equal(choose_cells(sources, 9, 0, "spread"), choose_cells(sources, 9, 1, "spread"))


def test_design_measures_the_cells_the_prior_is_least_sure_of():
    """Each designed cell is, among its pool, the one whose latency the prior and the cells chosen
    before it predict least surely: so N designed cells leave less of the prior's uncertainty over
    every cell than N random ones (the posterior variance after them, summed over the cells). The
    pool is every cell of a space this small, so every seed gives the same design."""
    space, x = _cells()
    sources = _devices(x, 4)
    model = Regression(space.features(x), sources)
    settings = Settings(tau=0.01, sigma=0.03, source_var=0.01)

    def left(cells: np.ndarray) -> float:
        _, cov = model.prior(settings, [0, 1, 2, 3])
        seen = model.rows(cells, [0, 1, 2, 3])
        cov = cov - cov @ seen.T @ np.linalg.solve(
            seen @ cov @ seen.T + settings.sigma**2 * np.eye(len(cells)), seen @ cov
        )
        every = model.rows(slice(None), [0, 1, 2, 3])
        return float(np.einsum("ij,jk,ik->", every, cov, every))

    designed = model.choose(sources, 8, settings, 0, "design")
    assert len(set(designed)) == 8
    np.testing.assert_array_equal(designed, model.choose(sources, 8, settings, 0, "design"))
    np.testing.assert_array_equal(designed, model.choose(sources, 8, settings, 1, "design"))
    assert left(designed) < min(left(choose_cells(sources, 8, seed, "random")) for seed in range(5))


def test_a_device_the_sources_explain_is_ranked_from_ten_cells():
    """A new device whose per-operation costs are a mix of the sources' is ranked almost exactly;
    the cells looked up keep their measured values and are marked."""
    space, x = _cells()
    devices = _devices(x, 4)
    target = 0.6 * devices[:, 0] + 0.5 * devices[:, 2] + 0.2
    lat = {"a": devices[:, 0], "b": devices[:, 1], "c": devices[:, 2], "d": devices[:, 3], "new": target}
    result = fewshot(space.features(x), lat, "new", samples=10, seed=0)
    assert stats.spearmanr(result.predicted_ms, target)[0] > 0.99
    assert result.sources == ["a", "b", "c", "d"] and result.measured.sum() == 10
    np.testing.assert_array_equal(result.predicted_ms[result.measured], target[result.measured])
    again = fewshot(space.features(x), lat, "new", samples=10, seed=0, settings=result.settings)
    np.testing.assert_array_equal(again.predicted_ms, result.predicted_ms)  # the settings depend on the sources only
    assert result.provenance()["predicted"] and result.provenance()["sources"] == ["a", "b", "c", "d"]
    assert isinstance(result.settings, Settings)


@pytest.mark.slow
def test_lut_transfer_writes_a_predicted_column_of_the_benchmark_and_refuses_bad_input(tmp_path):
    frame = pd.read_parquet(packaged_benchmark())
    keep = frame["cell"].map(lambda c: set(parse_cell(c).ops) <= {"none", "skip_connect", "nor_conv_3x3"})
    table = tmp_path / "sub.parquet"
    frame[keep].to_parquet(table)
    out = tmp_path / "fpga.parquet"
    proc = run_cli(
        "lut", "transfer", "--benchmark", str(table), "--device", "fpga", "--samples", "10", "--out", str(out)
    )
    written = pq.read_table(out)
    assert written.schema.names == ["cell", "latency_ms", "measured"] and written.num_rows == 729
    meta = json.loads(written.schema.metadata[b"hwnas"])
    assert (
        meta["predicted"] and meta["device"] == "fpga" and "fpga" not in meta["sources"] and len(meta["sources"]) == 8
    )
    rows = written.to_pandas().merge(frame[keep][["cell", "latency_ms_fpga"]], on="cell")
    looked_up = rows[rows["measured"]]
    assert len(looked_up) == 10 and np.allclose(looked_up["latency_ms"], looked_up["latency_ms_fpga"])
    rho = stats.spearmanr(rows["latency_ms"], rows["latency_ms_fpga"])[0]
    assert rho > 0.9 and f"Spearman rho {rho:.4f}" in proc.stdout
    for args, message in (
        (["--device", "tpu"], "has no latency column for device 'tpu'"),
        (["--device", "fpga", "--samples", "1"], "--samples must be at least 2"),
        (["--device", "fpga", "--source", "pixel3"], "needs at least 2 measured ones"),
        (["--device", "fpga", "--choose", "best"], "unknown cell choice 'best'"),
    ):
        bad = tmp_path / "bad.parquet"
        line = one_error_line(
            run_cli("lut", "transfer", "--benchmark", str(table), *args, "--out", str(bad), check=False)
        )
        assert message in line and not bad.exists()
