"""NATv2's archive policies: depth-uniform sampling (chi-square), the fixed-size archive that never
keeps a dominated arch over a non-dominated one, predictor selection, and NSGA-III for 3 objectives."""

import numpy as np
import pytest
from scipy.stats import chisquare

from hwnas.search import Costs, parse_budgets, search
from hwnas.search.evaluator import ProxyEvaluator
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
