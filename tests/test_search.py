"""Search: budgets, vectorised costs, the archive's front / hypervolume / pick, and the whole chain
on `mini` (real cpu table, real tiny supernet, `hwnas search --budget`) with its bad inputs."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from hwnas.errors import CheckpointError
from hwnas.hardware.table import LatencyTable
from hwnas.search import Archive, BudgetError, Costs, Objective, parse_budget, parse_budgets
from hwnas.search.accuracy import SupernetEvaluator
from hwnas.space import SearchSpace
from tests.cli import HWNAS, one_error_line, run_cli


@pytest.mark.parametrize(
    ("text", "objective", "limit"),
    [
        ("30ms", "latency", 30.0),
        ("500us", "latency", 0.5),
        ("0.2s", "latency", 200.0),
        ("2mJ", "energy", 2.0),
        ("300MFLOPs", "flops", 3e8),
        ("1.5GFLOPs", "flops", 1.5e9),
        ("5M", "params", 5e6),
        ("20MB", "size", 20.0),
    ],
)
def test_budgets_parse_with_units(text, objective, limit):
    budget = parse_budget(text)
    assert (budget.objective, budget.limit) == (objective, pytest.approx(limit))


@pytest.mark.parametrize("text", ["30", "30 bananas", "ms", "-3ms", "0ms", "30mS", "3e400ms"])
def test_bad_budgets(text):
    with pytest.raises(BudgetError, match="budget"):
        parse_budget(text)
    with pytest.raises(BudgetError, match="both limit latency"):
        parse_budgets(["30ms", "20ms"])


@pytest.mark.parametrize("preset", ["mini", "alphanet"])
def test_vectorised_params_and_flops_match_the_signatures(preset):
    space = SearchSpace.load(preset)
    costs = Costs(space, task="saliency")
    archs = [space.min(), space.max(), *(space.sample(np.random.default_rng(i)) for i in range(20))]
    x = np.array([space.encode(a) for a in archs])
    assert costs("params", x).tolist() == [space.params(a) for a in archs]
    assert costs("flops", x).tolist() == [space.flops(a) for a in archs]
    assert costs("size", x) == pytest.approx(np.array([space.params(a) * 4 / 1e6 for a in archs]))


def archive_of(points):
    space = SearchSpace.load("mini")
    archive = Archive(space=space, objectives=[Objective("accuracy", maximise=True), Objective("latency")])
    rng = np.random.default_rng(0)
    for acc, lat in points:
        arch = space.sample(rng)
        while arch in archive:
            arch = space.sample(rng)
        archive.add(arch, {"accuracy": acc, "latency": lat}, "supernet")
    return archive


def test_archive_front_hypervolume_and_pick_by_hand():
    archive = archive_of([(0.6, 1.0), (0.8, 3.0), (0.9, 4.0), (0.7, 3.5), (0.85, 5.0)])
    assert [r.values["latency"] for r in archive.front()] == [1.0, 3.0, 4.0]
    # reference accuracy 0, latency 6: boxes 0.6 x 5 + (0.8 - 0.6) x 3 + (0.9 - 0.8) x 2
    assert archive.hypervolume({"accuracy": 0.0, "latency": 6.0}) == pytest.approx(3.0 + 0.6 + 0.2)
    # normalised: latency / 6 in [0, 1], reference 1 -> the same boxes divided by 6
    assert archive.normalised_hypervolume({"accuracy": 0.0, "latency": 6.0}) == pytest.approx(3.8 / 6)
    assert archive.pick(parse_budgets(["3.5ms"])).values == {"accuracy": 0.8, "latency": 3.0}
    with pytest.raises(BudgetError, match=r"none of the 5 evaluated subnets meets 0.5ms \(lowest: latency 1\)"):
        archive.pick(parse_budgets(["0.5ms"]))


def test_archive_round_trips_through_json(tmp_path):
    archive = archive_of([(0.6, 1.0), (0.8, 3.0)])
    archive.meta["metric"] = "cc"
    loaded = Archive.load(archive.save(tmp_path / "a.json"), archive.space)
    assert [(str(r.arch), r.values, r.source) for r in loaded.records] == [
        (str(r.arch), r.values, r.source) for r in archive.records
    ]
    assert loaded.meta == {"metric": "cc"}


# ---- the chain on mini: real table, real supernet, hwnas search ------------------------------------
@pytest.fixture(scope="module")
def chain(mini_run, tmp_path_factory):
    table = LatencyTable.load(mini_run["lut"], SearchSpace.load("mini"))
    space = table.space
    low, high = table.predict(_at32(space.min())), table.predict(_at32(space.max()))
    return {**mini_run, "root": tmp_path_factory.mktemp("chain"), "budget": (low + high) / 2}


def _search(chain, *args: str, device: str = "cpu") -> list[str]:
    """`hwnas search` on the chain's cpu table of `mini`, plus `args`."""
    return ["search", "--device", device, "--space", "mini", "--lut", str(chain["lut"]), *args]


def _at32(arch):
    from dataclasses import replace

    return replace(arch, resolution=(32, 32))


@pytest.mark.slow
def test_search_chain_meets_the_budget_and_writes_a_loadable_choice(chain):
    out = chain["root"] / "search"
    budget = f"{chain['budget']:.4f}ms"
    proc = run_cli(
        *_search(chain, "--supernet", str(chain["ckpt"]), "--budget", budget, "--evals", "24", "--out", str(out))
    )
    assert "cc (supernet)" in proc.stdout and "chosen:" in proc.stdout
    space = SearchSpace.load("mini")
    best = space.load_arch(out / "best.json")
    table = LatencyTable.load(chain["lut"], space)
    assert table.predict(best) <= chain["budget"]
    archive = Archive.load(out / "archive.json", space)
    assert len(archive) == 24 and all(r.arch.resolution == (32, 32) for r in archive.records)
    assert str(best) in {str(r.arch) for r in archive.front()}
    chosen = archive.get(best)
    assert chosen.source == "supernet"
    feasible = [r.values["accuracy"] for r in archive.feasible(parse_budgets([budget]))]
    assert chosen.values["accuracy"] == max(feasible)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_search_with_a_proxy_says_so(chain):
    out = chain["root"] / "proxy"
    budget = f"{chain['budget']:.4f}ms"
    args = ["--proxy", "flops", "--budget", budget, "--algo", "random", "--evals", "16", "--out", str(out)]
    proc = run_cli(*_search(chain, *args))
    assert "PROXY, not accuracy" in proc.stdout
    assert json.loads((out / "archive.json").read_text())["meta"]["accuracy_source"] == "proxy-flops"


@pytest.mark.slow
def test_search_resumes_after_a_kill(chain):
    out = chain["root"] / "resume"
    budget = f"{chain['budget']:.4f}ms"
    args = _search(chain, "--supernet", str(chain["ckpt"]), "--budget", budget, "--algo", "random", "--evals", "40")
    args += ["--out", str(out)]
    proc = subprocess.Popen([*HWNAS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    archive_file, deadline = out / "archive.json", time.monotonic() + 300
    while not archive_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = json.loads(archive_file.read_text())["records"]
    assert 0 < len(before) < 40, "the search was not interrupted mid-way"
    resumed = run_cli(*args)
    assert "chosen:" in resumed.stdout and f"{len(before)} subnets were already evaluated" in resumed.stderr
    after = json.loads(archive_file.read_text())["records"]
    assert len(after) == 40 and after[: len(before)] == before
    line = one_error_line(run_cli(*args, "--seed", "1", check=False))
    assert "seed=0 (now 1)" in line and "--fresh" in line


@pytest.mark.slow
def test_search_bad_inputs(chain, tmp_path):
    supernet = ["--supernet", str(chain["ckpt"]), "--out", str(tmp_path / "s")]
    cases = [
        ("cpu", ["--budget", "fast"], "budget 'fast' is not a number with a unit"),
        ("cpu", ["--budget", "0.001ms"], "no subnet of 'mini' can meet the budget 0.001ms"),
        ("cpu-torch", ["--budget", "30ms"], "was built for device 'cpu', not 'cpu-torch'"),
        ("cpu", ["--budget", "30ms", "--algo", "magic"], "unknown --algo 'magic'"),
    ]
    for device, extra, message in cases:
        line = one_error_line(run_cli(*_search(chain, *supernet, *extra, device=device), check=False))
        assert message in line, line
    line = one_error_line(
        run_cli(
            "search",
            "--device",
            "cpu",
            "--space",
            "alphanet",
            "--lut",
            str(chain["lut"]),
            "--budget",
            "30ms",
            "--proxy",
            "flops",
            check=False,
        )
    )
    assert "mini" in line
    line = one_error_line(
        run_cli(
            "search", "--device", "cpu", "--space", "mini", "--lut", str(chain["lut"]), "--budget", "30ms", check=False
        )
    )
    assert "hwnas train supernet" in line
    assert not (tmp_path / "s").exists()
    other = SearchSpace.from_toml(SearchSpace.load("mini").toml.replace("expand = 4", "expand = 3"))
    with pytest.raises(CheckpointError, match="trained on space 'mini'"):
        SupernetEvaluator(chain["ckpt"], other)
