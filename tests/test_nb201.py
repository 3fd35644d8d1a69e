"""NAS-Bench-201 as a tabular space: cell strings and indices against the benchmark's own, exact
optima under budgets, and its bad inputs (issue 19)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import hwnas.search
from hwnas.errors import ArchError
from hwnas.space.nb201 import OPS, Benchmark, BenchmarkError, NB201Space, packaged_benchmark, parse_cell
from tests.cli import one_error_line, run_cli


@pytest.fixture(scope="module")
def bench():
    return Benchmark.load()


def test_every_cell_string_round_trips_and_keeps_its_benchmark_index(bench):
    frame = pd.read_parquet(packaged_benchmark())
    assert len(frame) == 15625 == bench.space.size() and bench.space.ops == OPS
    for text in frame["cell"]:
        cell = parse_cell(text)
        assert str(cell) == text
        assert bench.space.decode(bench.space.encode(cell)) == cell
    for index in (0, 1, 777, 15624):
        assert bench.index(bench.cell(index)) == index
    # look-ups by encoded cell return the row of that cell string
    rows = frame.sample(50, random_state=0)
    x = np.array([bench.space.encode(parse_cell(c)) for c in rows["cell"]])
    np.testing.assert_array_equal(bench.column("latency_ms_pixel3", x), rows["latency_ms_pixel3"].to_numpy())
    np.testing.assert_array_equal(bench.column("cifar100_val", x), rows["cifar100_val"].to_numpy())


def test_the_gene_order_is_the_cell_strings_edge_order():
    cell = parse_cell("|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    assert cell.ops == ("nor_conv_1x1", "nor_conv_3x3", "none", "skip_connect", "none", "avg_pool_3x3")
    assert NB201Space().encode(cell).tolist() == [2, 3, 0, 1, 0, 4]


def test_cells_wired_differently_that_compute_one_network_share_its_string():
    # genes: edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; 0 none, 1 skip, 2 conv1x1, 3 conv3x3, 4 avg_pool
    functions = NB201Space().functions(
        np.array([
            [1, 3, 0, 0, 1, 3],  # node 1 = x; node 3 = node 1 + conv3(node 2), node 2 = conv3(x)
            [1, 0, 3, 1, 0, 3],  # node 2 = conv3(node 1) = conv3(x); node 3 = x + conv3(node 2)
            [1, 0, 1, 0, 0, 1],  # a chain of skips: x
            [0, 0, 0, 1, 0, 0],  # one skip from the input: x
            [3, 0, 0, 0, 0, 0],  # nothing reaches the output
            [0, 0, 0, 0, 0, 3],  # a convolution of nothing: BatchNorm's constant, not zero
            [0, 0, 0, 4, 0, 0],  # the same wiring as the next, another operation
            [0, 0, 0, 2, 0, 0],
        ])
    )  # fmt: skip
    assert functions[0] == functions[1] == "nor_conv_3x3(nor_conv_3x3(x)) + x"
    assert functions[2] == functions[3] == "x"
    assert functions[4] == "0" and functions[5] == "nor_conv_3x3()"
    assert functions[6] != functions[7]


@pytest.mark.parametrize(
    "text",
    [
        "|conv~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",  # unknown op
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|",  # two nodes
        "|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",  # edge from itself
        "nor_conv_1x1~0+nor_conv_3x3~0|none~1+skip_connect~0|none~1|avg_pool_3x3~2",
    ],
)
def test_a_string_that_is_not_a_nb201_cell_is_refused(text):
    with pytest.raises(ArchError, match="NAS-Bench-201|edge|op~node"):
        parse_cell(text)


def _sub_table(tmp_path, ops=("none", "skip_connect", "nor_conv_3x3")):
    frame = pd.read_parquet(packaged_benchmark())
    keep = frame["cell"].map(lambda c: set(parse_cell(c).ops) <= set(ops))
    path = tmp_path / "sub.parquet"
    frame[keep].to_parquet(path)
    return path, frame[keep]


def test_a_search_finds_the_exact_optimum_under_a_budget_on_a_sub_table(tmp_path):
    path, sub = _sub_table(tmp_path)
    assert len(sub) == 3**6
    budget = float(np.percentile(sub["latency_ms_pixel3"], 50))
    exact = sub[sub["latency_ms_pixel3"] <= budget]["cifar100_val"].max() / 100
    result = hwnas.search.run(
        space="nb201", benchmark=path, device="pixel3", budgets=[f"{budget:.6f}ms"], metric="cifar100_val",
        algorithm="evolution", evaluations=150, seed=0, out=tmp_path / "run",
    )  # fmt: skip
    assert result.chosen.values["accuracy"] == pytest.approx(exact, abs=1e-9)
    assert result.chosen.values["latency"] <= budget
    assert len(result.archive) <= 150 and result.archive.space.size() == 729
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert {k: best[k] for k in ("space", "cell")} == {"space": "nb201", "cell": str(result.chosen.arch)}
    assert best["search"]["latency_budget_ms"] == {"pixel3": pytest.approx(budget, rel=1e-6)}
    lines = [r["line"] for r in json.loads((tmp_path / "run" / "archive.json").read_text())["records"]]
    assert all(parse_cell(line) for line in lines) and str(result.chosen.arch) in lines


@pytest.mark.slow
def test_the_cli_searches_the_packaged_table(tmp_path):
    shown = run_cli("search", "--space", "nb201", "--device", "gold_6226", "--budget", "12ms", "--algo", "random",
                    "--evals", "30", "--out", str(tmp_path)).stdout  # fmt: skip
    assert "cifar100_val (benchmark)" in shown and "chosen:" in shown
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["space"] == "nb201" and parse_cell(best["cell"])
    assert (tmp_path / "pareto.png").is_file()


@pytest.mark.slow
def test_nb201_bad_inputs(tmp_path):
    frame = pd.read_parquet(packaged_benchmark())
    frame.drop(columns=["cell"]).to_parquet(tmp_path / "nocell.parquet")
    frame.iloc[:-1].to_parquet(tmp_path / "short.parquet")
    frame.drop(columns=[c for c in frame.columns if c.startswith("latency_ms_")]).to_parquet(tmp_path / "nolat.parquet")
    broken = frame.copy()
    broken.loc[5, "cell"] = "|conv5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    broken.to_parquet(tmp_path / "badcell.parquet")
    (tmp_path / "notparquet.parquet").write_text("hello")
    base = ["search", "--space", "nb201", "--out", str(tmp_path / "out")]
    cases = [
        (["--device", "pixel9"], "no latency column for device 'pixel9'"),
        (["--device", "pixel3", "--metric", "cifar100_acc"], "no metric 'cifar100_acc'"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "nocell.parquet")], "has no 'cell' column"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "short.parquet")], "every cell needs a row"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "nolat.parquet")], "latency_ms_<device> columns"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "badcell.parquet")], "is not op~node"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "notparquet.parquet")], "not a readable Parquet"),
        (["--device", "pixel3", "--benchmark", str(tmp_path / "missing.parquet")], "does not exist"),
        (["--device", "pixel3", "--proxy", "flops"], "--proxy do not apply to --space nb201"),
        (["--device", "pixel3", "--budget", "1us"], "no subnet of 'nb201' can meet the budget"),
        (["--device", "pixel3", "--budget", "5M"], "has latency only, not 'params'"),
    ]
    for extra, message in cases:
        budget = [] if "--budget" in extra else ["--budget", "10ms"]
        line = one_error_line(run_cli(*base, *budget, *extra, check=False))
        assert message in line, line
    assert not (tmp_path / "out").exists()
    with pytest.raises(BenchmarkError, match="lists a cell twice"):
        Benchmark(pd.concat([frame, frame.iloc[:1]]), source="dup")


@pytest.mark.slow
def test_several_devices_each_with_a_budget_one_arch_meets_all(tmp_path):
    """Budgets per device; each device's latency is an objective; the chosen cell meets every budget,
    and it is the most accurate queried cell that does."""
    frame = pd.read_parquet(packaged_benchmark())
    budgets = {"pixel3": float(frame["latency_ms_pixel3"].median()), "gold_6226": 11.0}
    result = hwnas.search.run(
        space="nb201", device=["pixel3", "gold_6226"], budgets=[f"{d}:{v:.4f}ms" for d, v in budgets.items()],
        algorithm="nsga2", evaluations=60, seed=0, out=tmp_path / "run",
    )  # fmt: skip
    names = [o.name for o in result.archive.objectives]
    assert names == ["accuracy", "latency@pixel3", "latency@gold_6226"]
    chosen = result.chosen
    assert all(chosen.values[f"latency@{d}"] <= v for d, v in budgets.items())
    table = Benchmark.load()
    x = table.space.encode(chosen.arch)[None]
    assert chosen.values["latency@gold_6226"] == pytest.approx(table.column("latency_ms_gold_6226", x)[0])
    meeting = [r for r in result.archive.records if all(r.values[f"latency@{d}"] <= v for d, v in budgets.items())]
    assert chosen.values["accuracy"] == max(r.values["accuracy"] for r in meeting)


@pytest.mark.slow
def test_several_devices_need_the_device_in_each_latency_budget(tmp_path):
    base = ["search", "--space", "nb201", "--device", "pixel3", "--device", "fpga", "--out", str(tmp_path / "o")]
    cases = [
        (["--budget", "10ms"], "needs the device in each latency budget, like pixel3:12ms"),
        (["--budget", "raspi4:10ms"], "names device 'raspi4', which is not searched"),
        (["--budget", "pixel3:5M"], "DEVICE:VALUE names a device's latency or energy"),
    ]
    for extra, message in cases:
        assert message in one_error_line(run_cli(*base, *extra, check=False))
    assert not (tmp_path / "o").exists()


def test_several_devices_on_the_salnas_space(tmp_path):
    """Two latency tables (cpu and cpu-torch, synthetic costs that rank subnets differently): the
    chosen subnet meets both devices' budgets."""
    from dataclasses import replace

    from hwnas.hardware.backends.base import Timing
    from hwnas.space import SearchSpace
    from tests.test_lut import synthetic_table

    mini = SearchSpace.load("mini")
    paths = []
    for name, kernel_cost in (("cpu", 0.0), ("cpu-torch", 0.03)):
        table = synthetic_table(mini, resolutions=[(32, 32)])
        table.meta["device"]["name"] = name
        for sig in mini.all_block_signatures([(32, 32)], "saliency"):
            cost = 0.01 + sig.flops() / 1e9 + kernel_cost * (sig.kernel == 5)
            table.record(sig, Timing(cost, cost, cost, cost, 0.0, 30))
        table.save(tmp_path / f"{name}-mini.parquet")
        paths.append(tmp_path / f"{name}-mini.parquet")
    top = replace(mini.max(), resolution=(32, 32))
    limits = {}
    for name, path in zip(("cpu", "cpu-torch"), paths, strict=True):
        from hwnas.hardware.table import LatencyTable

        t = LatencyTable.load(path, mini)
        limits[name] = (t.predict(mini.min()) + t.predict(top)) / 2
    result = hwnas.search.run(
        device=["cpu", "cpu-torch"], space="mini", lut=paths, proxy="flops", algorithm="random", evaluations=24,
        budgets=[f"{n}:{v:.5f}ms" for n, v in limits.items()], out=tmp_path / "run",
    )  # fmt: skip
    assert all(result.chosen.values[f"latency@{n}"] <= v for n, v in limits.items())
    assert result.archive.meta["device"] == "cpu+cpu-torch"


@pytest.mark.slow
def test_pnag_answers_a_new_budget_from_its_cache_whatever_the_out(tmp_path):
    """PNAG trained once (a cache shared across output folders): a second budget, in a new process
    with another --out, is answered by inference, with nothing re-scored but the answer itself."""
    import os
    import subprocess

    from tests.cli import HWNAS

    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    base = [*HWNAS, "search", "--space", "nb201", "--device", "pixel3", "--algo", "pnag", "--evals", "60",
            "--set", "evaluator_steps=60", "--set", "generator_steps=60"]  # fmt: skip

    def search(budget, out):
        proc = subprocess.run([*base, "--budget", budget, "--out", str(out)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout, json.loads((out / "archive.json").read_text())

    first, trained = search("12ms", tmp_path / "a")
    assert "generator trained on 60 scored archs" in first and len(trained["records"]) == 60
    second, answered = search("30ms", tmp_path / "b")  # a budget any answer of a trained generator meets
    assert "answered by the cached generator" in second and "nothing was scored" in second
    assert answered["meta"]["pnag_cache"] == "reused" and answered["meta"]["pnag_seconds"][0] < 1.0
    # no accuracy evaluation: the 60 archs it learned from come from the cache, the answer is not scored
    assert len(answered["records"]) == 60 and {r["source"] for r in answered["records"]} == {"benchmark (cached)"}
    assert "not evaluated (the generator's answer)" in second
    best = json.loads((tmp_path / "b" / "best.json").read_text())
    assert best["cell"] == answered["meta"]["pnag_generated"][0]  # the chosen arch is the generator's answer
    again, resumed = search("30ms", tmp_path / "a")  # the same folder, another budget: resumed, not refused
    assert "answered by the cached generator" in again and len(resumed["records"]) == 60
