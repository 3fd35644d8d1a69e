"""PNAG: the Pareto-dominance rule (Eq. 4) and budget interpolation by hand, the evaluator's ranking,
and the searcher end to end on a synthetic table: it meets the budget, reuses its cache for another
budget, and rebuilds it for another table; a budget beyond the trained range is flagged."""

from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.search import Costs, parse_budgets, search
from hwnas.search.accuracy import ProxyEvaluator
from hwnas.search.pnag import (
    PNAG,
    BudgetEmbedding,
    Generator,
    dominance,
    load,
    neighbours,
    save,
    train_evaluator,
    train_ranking_evaluator,
)
from hwnas.search.predictors import one_hot
from hwnas.space import SearchSpace
from hwnas.space.nb201 import NB201Space
from tests.test_lut import synthetic_table

FAST = {"evaluator_steps": 100, "generator_steps": 60}


def test_dominance_rule_by_hand():
    acc = np.array([0.9, 0.8, 0.7, 0.95])
    cost = np.array([5.0, 3.0, 4.0, 9.0])  # budget 6: archs 0-2 feasible, 3 not
    d = dominance(acc, cost, 6.0)
    assert d[0, 1] == 1 and d[1, 0] == -1  # both feasible: higher accuracy wins
    assert d[2, 3] == 1 and d[3, 2] == -1  # feasible beats infeasible, whatever the accuracy
    d = dominance(acc, cost, 2.0)  # nothing feasible: lower cost wins
    assert d[1, 0] == 1 and d[0, 1] == -1 and d[2, 3] == 1


def test_budget_embedding_interpolates_linearly_and_clamps():
    emb = BudgetEmbedding(np.array([1.0, 2.0, 4.0]), dim=3)
    g = emb.table.weight.detach()
    at = lambda b: emb(torch.tensor([b])).detach()[0]  # noqa: E731
    assert torch.allclose(at(2.0), g[1]) and torch.allclose(at(4.0), g[2])
    assert torch.allclose(at(3.0), 0.5 * g[1] + 0.5 * g[2])  # alpha = (4 - 3) / (4 - 2)
    assert torch.allclose(at(1.25), 0.75 * g[0] + 0.25 * g[1])
    assert torch.allclose(at(9.0), g[2]) and not emb.in_range(9.0) and emb.in_range(1.5)


@pytest.mark.slow
def test_evaluator_ranks_feasible_archs_by_accuracy():
    space = SearchSpace.load("mini")
    rng = np.random.default_rng(0)
    _, xu = space.bounds()
    x = rng.integers(0, xu + 1, size=(60, len(xu)))
    acc = x[:, space.gene("stages[6].width")] + 0.3 * x[:, space.gene("stem.width")] + rng.normal(0, 0.05, 60)
    cost = x[:, space.gene("resolution")] + rng.random(60)
    budgets = np.array([0.5, 1.5, 2.5])
    model = train_evaluator(torch.as_tensor(one_hot(space, x), dtype=torch.float32), acc, cost, budgets, steps=200)
    with torch.no_grad():
        score = model(torch.as_tensor(one_hot(space, x), dtype=torch.float32), torch.full((60,), 2.5)).numpy()
    from scipy.stats import kendalltau

    assert kendalltau(score, acc).statistic > 0.5  # budget 2.5 admits every arch: accuracy decides


def _problem(space, table, budget):
    costs = Costs(space, task="saliency", table=table)
    return {"accuracy": ProxyEvaluator("flops", costs, space), "costs": costs, "budgets": parse_budgets([budget])}


@pytest.mark.slow
def test_pnag_meets_budgets_caches_and_rebuilds(tmp_path):
    space = SearchSpace.load("mini")
    table = synthetic_table(space)
    low, high = table.predict(space.min()), table.predict(space.max())
    cache = tmp_path / "pnag.pt"
    results = []
    for fraction in (0.5, 0.3, 0.02):  # later budgets: same table and archs, so inference only
        budget = f"{low + fraction * (high - low):.5f}ms"
        archive = search(
            space, **_problem(space, table, budget), algorithm="pnag", evaluations=40, seed=0,
            options={"cache": cache, **FAST},
        )  # fmt: skip
        generated = space.parse(archive.meta["pnag_generated"][0])
        assert table.predict(generated) <= float(budget[:-2])  # how fast an answer comes: bench.nb201 --pnag-protocol
        results.append((archive.meta["pnag_cache"], len(archive)))
        sources = {r.source for r in archive.records}
        assert sources == ({"proxy-flops"} if len(results) == 1 else {"proxy-flops (cached)"})
        assert archive.meta["pnag_answers"][0]["values"]["accuracy"] is None  # an answer is inferred, not scored
    # reused: the 40 archs it learned from come back from the cache, nothing is scored, answers included
    assert results == [("trained", 40), ("reused", 40), ("reused", 40)]
    other = synthetic_table(space)
    other.meta["device"] = {"name": "another-device"}
    archive = search(
        space, **_problem(space, other, f"{(low + high) / 2:.5f}ms"), algorithm="pnag", evaluations=40, seed=0,
        options={"cache": cache, **FAST},
    )  # fmt: skip
    assert archive.meta["pnag_cache"] == "trained"
    # the paper's evaluator is another generator: not the cached one, and it round-trips too
    archive = search(
        space, **_problem(space, table, f"{(low + high) / 2:.5f}ms"), algorithm="pnag", evaluations=40, seed=0,
        options={"cache": tmp_path, **FAST, "evaluator": "paper"},
    )  # fmt: skip
    assert archive.meta["pnag_cache"] == "trained"
    kinds = {load(Path(p), space, None).evaluator_kind for p in (cache, archive.meta["pnag_cache_file"])}
    assert kinds == {"ranknet", "paper"}


@pytest.mark.slow
def test_a_cached_generator_scores_and_answers_as_trained(tmp_path):
    space = SearchSpace.load("mini")
    rng = np.random.default_rng(0)
    _, xu = space.bounds()
    x = space.canonical(rng.integers(0, xu + 1, size=(40, len(xu))))
    acc, budgets = x.sum(1) + rng.normal(0, 0.1, 40), np.array([1.0, 2.0])
    cost = lambda v: np.asarray(v, dtype=float).sum(1) / 20  # noqa: E731
    model = PNAG(space, Generator(space, budgets), train_ranking_evaluator(space, x, acc), budgets, "k", x, acc)
    again = load(save(model, tmp_path / "g.pt"), space, "k")
    assert again.evaluator_kind == "ranknet" and np.array_equal(again.scored_x, x)
    assert np.array_equal(model.score(x, 1.5), again.score(x, 1.5))
    assert np.array_equal(model.generate(1.5, cost), again.generate(1.5, cost))
    assert load(tmp_path / "g.pt", space, "another key") is None


def test_neighbours_are_every_arch_one_gene_away():
    space = NB201Space()
    a, b = np.zeros((1, 6), dtype=np.int64), np.array([[1, 0, 0, 0, 0, 0]])
    assert len(neighbours(space, a)) == 6 * 4
    assert all((row != a[0]).sum() == 1 for row in neighbours(space, a))
    # a and b are each other's neighbours; what both reach: gene 0 at 2, 3 or 4 (24 + 24 - 3, a and b included)
    both = neighbours(space, np.vstack([a, b]))
    assert len(both) == 45 and {0, 1} <= {int(r[0]) for r in both if not r[1:].any()}


@pytest.mark.slow
def test_budget_beyond_the_trained_range_is_flagged(tmp_path):
    space = SearchSpace.load("mini")
    table = synthetic_table(space)
    high = table.predict(space.max())
    archive = search(
        space, **_problem(space, table, f"{3 * high:.5f}ms"), algorithm="pnag", evaluations=30, seed=0,
        options=FAST,
    )  # fmt: skip
    assert any("outside the generator's trained range" in w for w in archive.meta["warnings"])


def test_predictor_option_is_refused_for_pnag():
    space = SearchSpace.load("mini")
    table = synthetic_table(space)
    from hwnas.search import BudgetError

    with pytest.raises(BudgetError, match="--predictor applies to mosegnas and natv2"):
        search(space, **_problem(space, table, "9ms"), algorithm="pnag", evaluations=30, options={"predictor": "gp"})
