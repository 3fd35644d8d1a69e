"""NATv2's archive policies: depth-uniform sampling (chi-square), the fixed-size archive that never
keeps a dominated arch over a non-dominated one, predictor selection, and NSGA-III for 3 objectives."""

import numpy as np
import pytest
from scipy.stats import chisquare

from hwnas.search import Costs, parse_budgets, search
from hwnas.search.accuracy import ProxyEvaluator
from hwnas.search.natv2 import choose_predictor, depth_uniform, keep_best, total_depth
from hwnas.space import SearchSpace
from tests.test_lut import synthetic_table
from tests.test_search import archive_of


@pytest.mark.parametrize("preset", ["mini", "alphanet"])
def test_depth_uniform_sampling_is_uniform_over_total_depth(preset):
    space = SearchSpace.load(preset)
    x = depth_uniform(space, 6000, np.random.default_rng(0))
    totals = total_depth(space, x)
    values, counts = np.unique(totals, return_counts=True)
    depths = [st.depths for st in space.stages]
    assert values.min() == sum(min(d) for d in depths) and values.max() == sum(max(d) for d in depths)
    assert len(values) == sum(max(d) for d in depths) - sum(min(d) for d in depths) + 1
    assert chisquare(counts).pvalue > 0.001
    # plain uniform sampling of each gene is far from uniform in total depth (the reason for the policy)
    _, xu = space.bounds()
    plain = total_depth(space, np.random.default_rng(1).integers(0, xu + 1, size=(6000, space.n_var)))
    assert chisquare(np.unique(plain, return_counts=True)[1]).pvalue < 1e-6


@pytest.mark.parametrize("seed", range(20))
def test_replacement_keeps_the_size_and_never_drops_a_non_dominated_arch_for_a_dominated_one(seed):
    rng = np.random.default_rng(seed)
    archive = archive_of(zip(rng.random(30), rng.random(30), strict=True))
    size = int(rng.integers(3, 20))
    kept = keep_best(archive, archive.records, size)
    assert len(kept) == size
    front = {str(r.arch) for r in archive.front()}
    kept_keys = {str(r.arch) for r in kept}
    if any(k not in front for k in kept_keys):  # a dominated arch survived: then every front arch did
        assert front <= kept_keys


def test_replacement_by_hand():
    archive = archive_of([(0.9, 5.0), (0.5, 1.0), (0.4, 2.0), (0.6, 6.0), (0.3, 3.0)])
    kept = keep_best(archive, archive.records, 3)
    # front: (0.9, 5) and (0.5, 1); next rank: (0.4, 2) and (0.6, 6) tie on crowding (both ends): the first wins
    assert sorted((r.values["accuracy"], r.values["latency"]) for r in kept) == [(0.4, 2.0), (0.5, 1.0), (0.9, 5.0)]


@pytest.mark.slow
def test_predictor_selection_prefers_a_model_that_fits_the_structure():
    space = SearchSpace.load("mini")
    rng = np.random.default_rng(0)
    _, xu = space.bounds()
    x = rng.integers(0, xu + 1, size=(60, len(xu)))
    y = x @ rng.normal(size=len(xu))  # linear: ridge or GP rank it best, KNN and CART worse
    assert choose_predictor(space, x, y, folds=4) in ("ridge", "gp", "svr")


def test_three_objectives_search_with_nsga3():
    space = SearchSpace.load("mini")
    table = synthetic_table(space)
    costs = Costs(space, task="saliency", table=table)
    low, high = table.predict(space.min()), table.predict(space.max())
    archive = search(
        space,
        accuracy=ProxyEvaluator("flops", costs, space),
        costs=costs,
        budgets=parse_budgets([f"{(low + high) / 2:.5f}ms"]),
        objectives=["latency", "params"],
        algorithm="natv2",
        evaluations=20,
        seed=0,
        options={"predictor": "ridge", "surrogate_gens": 10},
    )
    assert len(archive) == 20 and [o.name for o in archive.objectives] == ["accuracy", "latency", "params"]
    assert archive.meta["hypervolume"] > 0


# ---- supernet adaptation and post-processing ----------------------------------------------------
def test_arch_pool_draws_distinct_front_archs_repeatably():
    from hwnas.train.trainer import ArchPool

    space = SearchSpace.load("mini")
    front = tuple(space.sample(np.random.default_rng(i)) for i in range(6))
    pool = ArchPool(front, k=4, round=2)
    drawn = pool.draw(seed=0, step=5)
    assert len(drawn) == 4 and len({str(a) for a in drawn}) == 4 and all(a in front for a in drawn)
    assert pool.draw(seed=0, step=5) == drawn  # every DDP rank draws the same subnets
    assert {str(a) for s in range(20) for a in pool.draw(seed=0, step=s)} == {str(a) for a in front}
    assert len(ArchPool(front[:2], k=4).draw(seed=0, step=0)) == 2


@pytest.mark.slow
def test_natv2_adapts_the_supernet_and_scores_everything_on_the_adapted_one(mini_run, tmp_path):
    import torch

    from hwnas.nn.checkpoint import load
    from hwnas.search.accuracy import SupernetEvaluator
    from hwnas.search.archive import Archive
    from tests.cli import one_error_line, run_cli

    space = SearchSpace.load("mini")
    args = ["search", "--device", "cpu", "--space", "mini", "--lut", str(mini_run["lut"]), "--budget", "10s",
            "--supernet", str(mini_run["ckpt"]), "--algo", "natv2", "--evals", "20", "--out", str(tmp_path)]  # fmt: skip # noqa: E501
    proc = run_cli(*args, "--adapt-epochs", "1")
    adapted = tmp_path / "supernet-adapted.pt"
    assert f"scores come from the adapted supernet {adapted}" in proc.stdout.replace("\n", "")
    archive = Archive.load(tmp_path / "archive.json", space)
    assert archive.meta["supernet"] == str(adapted) and archive.meta["adapt_epochs"] == 1
    assert any("adapted_on" in it for it in archive.meta["iterations"])
    before, after = load(mini_run["ckpt"]).data["model"], load(adapted).data["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the supernet was trained
    fresh = SupernetEvaluator(adapted, space)  # every record's score is the adapted supernet's own
    for record in archive.records[:: max(1, len(archive) // 4)]:
        assert record.values["accuracy"] == pytest.approx(fresh(record.arch), abs=1e-6)
    # it cannot resume (its scores came from a supernet that has changed since); adaptation is natv2's
    assert "cannot resume" in one_error_line(run_cli(*args, "--adapt-epochs", "1", check=False))
    wrong = [a if a != "natv2" else "nsga2" for a in args]
    assert "applies to natv2" in one_error_line(run_cli(*wrong, "--adapt-epochs", "1", "--fresh", check=False))


@pytest.mark.slow
def test_postprocess_picks_the_best_epoch_count_and_reports_the_test_score(mini_run, tmp_path):
    import json

    from hwnas.data import load_data
    from hwnas.nn.checkpoint import load
    from hwnas.train.evaluation import evaluate
    from hwnas.train.task import make_task
    from tests.cli import one_error_line, run_cli

    out = tmp_path / "pp.pt"
    base = ["train", "postprocess", "--supernet", str(mini_run["ckpt"]), "--arch", "min", "--batch-size", "16"]
    proc = run_cli(*base, "--max-epochs", "3", "--patience", "1", "--lr", "0.05", "--out", str(out))
    report = json.loads(out.with_suffix(".json").read_text())
    phase1, best = report["phase1"], report["best_epochs"]
    assert best == max(phase1, key=lambda r: (r["cc"], -r["epoch"]))["epoch"]
    assert len(phase1) == 3 or phase1[-1]["epoch"] - best == 1  # stopped one epoch (patience) after the best
    ckpt = load(out)
    assert ckpt.kind == "subnet" and ckpt.data["epoch"] == best and ckpt.data["data_size"] == [64 + 32, 32]  # train+val
    # the test score is the phase-2 subnet's on the held-out split (synthetic: its own seed, never trained on)
    w, h = SearchSpace.load("mini").max().resolution  # the supernet trained at the largest resolution
    data = load_data("synthetic", task="saliency", size=(h, w), train_size=64, val_size=32)
    scores = evaluate(ckpt.model(), data.scored_on_test(), make_task("saliency"))
    assert report["test"]["cc"] == pytest.approx(scores["cc"], abs=1e-5)
    assert f"test cc: {report['test']['cc']:.4f} after post-processing" in proc.stdout
    assert not data.test.images.equal(data.val.images)
    # bad input: a subnet checkpoint, zero epochs
    line = one_error_line(run_cli("train", "postprocess", "--supernet", str(out), "--arch", "min", check=False))
    assert "post-processing starts from a supernet" in line
    assert "at least 1" in one_error_line(
        run_cli(*base, "--max-epochs", "0", "--out", str(tmp_path / "x.pt"), check=False)
    )
    assert not (tmp_path / "x.pt").exists()
