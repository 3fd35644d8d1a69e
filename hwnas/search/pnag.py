"""PNAG (Guo et al., "Pareto-aware Neural Architecture Generation for Diverse Computational Budgets").

Algorithm 1: sample M archs and score them (supernet or proxy), learn an architecture evaluator
R(a; B; w) — three fully connected layers over (arch one-hot, budget embedding) — with the pairwise
hinge loss of Eq. 3 under the Pareto-dominance rule of Eq. 4 (feasible beats infeasible; among
feasible, higher accuracy; among infeasible, lower cost), then learn a budget-conditioned LSTM
generator by policy gradient with an entropy bonus (Eq. 2) over K budgets spread evenly over the
cost range. Budgets are learnable embeddings; any budget in range is the linear interpolation of
its two neighbours' embeddings (Section 3.1.2). A budget outside the trained range is clamped to the
nearest end and flagged. Tokens are generated in the space's encoding order (resolution, stem, then
per stage width, depth and each block's kernel and expansion, last width).

What hwnas changes, each measured on NAS-Bench-201 (README, `python -m bench.nb201 --pnag-protocol`):
- The evaluator (`evaluator="ranknet"`, the default): the cost is exact here (a latency table), so
  Eq. 4's feasibility and cost order are computed, not learned, and what is learned is Eq. 3's
  hinge on the pairs both feasible, an accuracy ranking: MoSegNAS's RankNet. The paper's
  budget-conditioned MLP stays as `evaluator="paper"`; trained on 200 cells, its own first pick of
  all cells under a budget missed the best by 6.02 points (median of 45 runs), RankNet's by 1.39.
- The generator's reward also subtracts the true relative overshoot of the budget, its advantage
  is normalised per budget, and its entropy bonus is 0.1: at 0.01 it collapsed to one or two
  cells per budget.
- An answer is the evaluator's best of the generator's samples and of their one-gene neighbours
  (`rounds` of polishing around the `polish` best), all by inference and table look-ups; the
  generator's own greedy answer is reported beside it (`raw_met`).
A trained generator is cached with the digests of the space, the table, the scored archs it
learned from and how it was trained; any change rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.files import atomic_write_bytes
from hwnas.search.archive import Archive
from hwnas.search.problem import ArchProblem, Progress, initial_design, unarchived
from hwnas.search.searchers import OWN_FLAG, Searcher, Termination
from hwnas.space import SearchSpace

HIDDEN = 64


class BudgetEmbedding(nn.Module):
    """Learnable vectors for K sorted budgets; others by linear interpolation (Section 3.1.2)."""

    def __init__(self, budgets: np.ndarray, dim: int = HIDDEN):
        super().__init__()
        self.register_buffer("budgets", torch.as_tensor(np.sort(budgets), dtype=torch.float32))
        self.table = nn.Embedding(len(budgets), dim)

    def in_range(self, budget: float) -> bool:
        return float(self.budgets[0]) <= budget <= float(self.budgets[-1])

    def forward(self, budget: torch.Tensor) -> torch.Tensor:
        b = budget.clamp(float(self.budgets[0]), float(self.budgets[-1]))
        hi = torch.searchsorted(self.budgets, b).clamp(1, len(self.budgets) - 1)
        lo = hi - 1
        b_lo, b_hi = self.budgets[lo], self.budgets[hi]
        alpha = ((b_hi - b) / (b_hi - b_lo)).unsqueeze(-1)  # the paper's alpha: weight of the lower budget
        return alpha * self.table(lo) + (1 - alpha) * self.table(hi)


class Evaluator(nn.Module):
    """R(a; B; w): three fully connected layers over (one-hot arch, budget embedding)."""

    def __init__(self, features: int, budgets: np.ndarray):
        super().__init__()
        self.embedding = BudgetEmbedding(budgets)
        self.net = nn.Sequential(
            nn.Linear(features + HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1)
        )

    def forward(self, arch: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([arch, self.embedding(budget)], dim=-1)).squeeze(-1)


def dominance(acc: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    """Eq. 4 as a matrix: d[i, j] = 1 if arch i is better than arch j under `budget`, else -1."""
    feasible = cost <= budget
    fi, fj = feasible[:, None], feasible[None, :]
    better = np.where(
        fi & ~fj,
        True,
        np.where(~fi & fj, False, np.where(fi & fj, acc[:, None] > acc[None, :], cost[:, None] < cost[None, :])),
    )
    return np.where(better, 1.0, -1.0)


class RankingEvaluator(nn.Module):
    """R(a; B) when the cost is exact (a latency table): Eq. 4 orders every feasible arch above
    every infeasible one and the infeasible by cost, both known from the table, so what is left to
    learn is Eq. 3's hinge over the pairs that are both feasible — an accuracy ranking, whatever B.
    That ranking is MoSegNAS's RankNet (`hwnas.search.predictors.RankNet`, the same pairwise margin
    loss), scored in [0, 1]; the budget is taken and ignored."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, arch: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(arch)).squeeze(-1)


def train_ranking_evaluator(space: SearchSpace, x: np.ndarray, acc: np.ndarray, *, seed: int = 0) -> RankingEvaluator:
    from hwnas.search.predictors import RankNet

    return RankingEvaluator(RankNet(space, seed=seed).fit(x, acc).net).eval()


def train_evaluator(
    features: torch.Tensor, acc: np.ndarray, cost: np.ndarray, budgets: np.ndarray, *, steps: int = 300, seed: int = 0
) -> Evaluator:
    """Eq. 3: mean over budgets and ordered pairs of max(0, 1 - d_ij (R_i - R_j))."""
    with torch.random.fork_rng(devices=[]):  # initialised from `seed`, the caller's RNG untouched
        torch.manual_seed(seed)
        model = Evaluator(features.shape[1], budgets)
    d = torch.as_tensor(np.stack([dominance(acc, cost, b) for b in budgets]), dtype=torch.float32)
    off_diagonal = 1 - torch.eye(len(acc))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    b = torch.as_tensor(budgets, dtype=torch.float32)
    for _ in range(steps):
        r = torch.stack([model(features, bk.expand(len(features))) for bk in b])  # (K, M)
        diff = r[:, :, None] - r[:, None, :]
        loss = (torch.relu(1 - d * diff) * off_diagonal).sum() / (len(b) * off_diagonal.sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


class Generator(nn.Module):
    """An LSTM that emits an arch token by token, conditioned on a budget embedding (Fig. 2)."""

    def __init__(self, space: SearchSpace, budgets: np.ndarray):
        super().__init__()
        self.sizes = [len(choices) for _, choices in space.variables]
        self.embedding = BudgetEmbedding(budgets)
        self.tokens = nn.Embedding(sum(self.sizes) + 1, HIDDEN)
        self.offsets = torch.as_tensor(np.cumsum([0, *self.sizes[:-1]]) + 1)
        self.cell = nn.LSTMCell(2 * HIDDEN, HIDDEN)
        self.heads = nn.ModuleList(nn.Linear(HIDDEN, n) for n in self.sizes)

    def forward(self, budget: torch.Tensor, *, greedy: bool = False, generator=None):
        """(tokens (n, n_var), log-probabilities (n,), entropies (n,)) for a batch of budgets."""
        n = len(budget)
        b = self.embedding(budget)
        h = c = torch.zeros(n, HIDDEN)
        previous = torch.zeros(n, dtype=torch.long)
        tokens, log_p, entropy = [], torch.zeros(n), torch.zeros(n)
        for t, head in enumerate(self.heads):
            h, c = self.cell(torch.cat([self.tokens(previous), b], dim=-1), (h, c))
            dist = torch.distributions.Categorical(logits=head(h))
            choice = (
                dist.probs.argmax(-1) if greedy else torch.multinomial(dist.probs, 1, generator=generator).squeeze(-1)
            )
            tokens.append(choice)
            log_p = log_p + dist.log_prob(choice)
            entropy = entropy + dist.entropy()
            previous = choice + self.offsets[t]
        return torch.stack(tokens, dim=1), log_p, entropy


@dataclass
class PNAG:
    """A trained generator and evaluator for one (space, table, scored archs)."""

    space: SearchSpace
    generator: Generator
    evaluator: Evaluator | RankingEvaluator
    budgets: np.ndarray
    key: str
    scored_x: np.ndarray | None = None  # the archs it learned from, encoded
    scored_accuracy: np.ndarray | None = None  # and their scores

    @property
    def evaluator_kind(self) -> str:
        return "ranknet" if isinstance(self.evaluator, RankingEvaluator) else "paper"

    def in_range(self, budget: float) -> bool:
        return self.generator.embedding.in_range(budget)

    def greedy(self, budget: float) -> np.ndarray:
        """The generator's own answer for `budget`: the most likely token at each step, unchecked."""
        with torch.no_grad():
            return self.generator(torch.full((1,), float(budget)), greedy=True)[0].numpy()[0]

    def generate(
        self, budget: float, cost, *, samples: int = 256, polish: int = 16, rounds: int = 3, seed: int = 0
    ) -> np.ndarray:
        """The answer for `budget`, by inference: the greedy arch and `samples` archs drawn from the
        generator for the budget (as PNAG's Fig. 5 samples 1,000), then, `rounds` times, every
        one-gene neighbour of the `polish` best found so far; of those whose cost (from `cost(x)`, a
        table) meets it, the one the evaluator ranks first. If none meets it, the cheapest shrunk
        gene by gene toward the smallest subnet until it fits (so an answer meets any budget the
        smallest subnet meets)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            drawn = self.generator(torch.full((samples,), float(budget)), generator=g)[0].numpy()
        xs = np.unique(self.space.canonical(np.vstack([self.greedy(budget)[None], drawn])), axis=0)
        c = cost(xs)
        if not (c <= budget).any():
            return self._shrink(xs[int(np.argmin(c))], budget, cost, np.random.default_rng(seed))
        xs, seen = xs[c <= budget], {row.tobytes() for row in xs}
        for _ in range(rounds):
            top = xs[np.argsort(-self.score(xs, budget), kind="stable")[:polish]]
            more = np.array([r for r in neighbours(self.space, top) if r.tobytes() not in seen], dtype=np.int64)
            if not len(more):
                break
            seen |= {row.tobytes() for row in more}
            xs = np.vstack([xs, more[cost(more) <= budget]])
        return xs[int(np.argmax(self.score(xs, budget)))]

    def score(self, xs: np.ndarray, budget: float) -> np.ndarray:
        """The evaluator's scores R(a; B) of encoded archs `xs` under `budget` (higher is better)."""
        with torch.no_grad():
            features = torch.as_tensor(self.space.features(xs), dtype=torch.float32)
            return self.evaluator(features, torch.full((len(xs),), float(budget))).numpy()

    def _shrink(self, x: np.ndarray, budget: float, cost, rng: np.random.Generator) -> np.ndarray:
        x, floor = x.copy(), self.space.encode(self.space.min())
        for gene in rng.permutation(len(x)):
            if cost(x[None])[0] <= budget:
                break
            x[gene] = floor[gene]
        return x


def neighbours(space: SearchSpace, xs: np.ndarray) -> np.ndarray:
    """Every arch one gene away from a row of `xs` (encoded), canonical, duplicates dropped."""
    _, xu = space.bounds()
    out = []
    for gene, top in enumerate(xu):
        for value in range(int(top) + 1):
            moved = xs[xs[:, gene] != value].copy()
            moved[:, gene] = value
            out.append(moved)
    return np.unique(space.canonical(np.vstack(out)), axis=0)


def train_generator(
    space: SearchSpace,
    evaluator: Evaluator | RankingEvaluator,
    cost,
    budgets: np.ndarray,
    *,
    steps: int = 200,
    samples: int = 16,
    entropy_weight: float = 0.1,
    seed: int = 0,
) -> Generator:
    """Eq. 2 by REINFORCE: reward = evaluator score minus the relative overshoot of the true cost,
    a moving-average baseline per budget, the advantage divided by the batch's spread of rewards
    for that budget, and an entropy bonus."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Generator(space, budgets)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    b = torch.as_tensor(np.repeat(budgets, samples), dtype=torch.float32)
    baseline = torch.zeros(len(budgets))
    for step in range(steps):
        tokens, log_p, entropy = model(b, generator=g)
        x = tokens.numpy()
        with torch.no_grad():
            score = evaluator(torch.as_tensor(space.features(x), dtype=torch.float32), b)
        overshoot = torch.as_tensor(np.maximum(cost(x) / b.numpy() - 1, 0), dtype=torch.float32)
        reward = (score - 10 * overshoot).view(len(budgets), samples)
        baseline = reward.mean(1) if step == 0 else 0.9 * baseline + 0.1 * reward.mean(1)
        spread = reward.std(1, keepdim=True).clamp_min(1e-6)
        advantage = ((reward - baseline[:, None]) / spread).flatten()
        loss = -(advantage * log_p).mean() - entropy_weight * entropy.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def cache_key(
    space: SearchSpace, table_meta: dict, accuracy: str, scored: int, budgets_k: int, seed: int, trained_as: tuple = ()
) -> str:
    """What a cached generator depends on: the space, the table (device, dates, calibration), the
    accuracy source (supernet file digest or proxy), how many archs it scored, K, the seed and how
    it was trained (`trained_as`: the evaluator and the steps)."""
    digest = hashlib.sha256()
    for part in (
        space.digest(),
        json.dumps(table_meta, sort_keys=True, default=str),
        accuracy,
        scored,
        budgets_k,
        seed,
        *trained_as,
    ):
        digest.update(str(part).encode())
    return digest.hexdigest()[:16]


def cache_file(cache: str | Path | None, key: str) -> Path | None:
    """Where the generator for `key` is kept: `cache` itself if it names a .pt file, else
    `cache/pnag-KEY.pt` in a cache folder that every later search shares, whatever its --out."""
    if cache is None:
        return None
    cache = Path(cache)
    return cache if cache.suffix == ".pt" else cache / f"pnag-{key}.pt"


def save(model: PNAG, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    torch.save(
        {
            "format": "hwnas-pnag",
            "key": model.key,
            "budgets": model.budgets.tolist(),
            "generator": model.generator.state_dict(),
            "evaluator": model.evaluator.state_dict(),
            "evaluator_kind": model.evaluator_kind,
            "features": model.evaluator.net[0].in_features - (HIDDEN if model.evaluator_kind == "paper" else 0),
            "scored_x": np.asarray(model.scored_x).tolist() if model.scored_x is not None else [],
            "scored_accuracy": np.asarray(model.scored_accuracy).tolist() if model.scored_x is not None else [],
        },
        buffer,
    )
    return atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, space: SearchSpace, key: str | None) -> PNAG | None:
    """The cached generator at `path` if it was trained for `key` (any, if None); None if absent,
    stale or damaged."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache is rebuilt, never trusted
        return None
    if not isinstance(data, dict) or data.get("format") != "hwnas-pnag" or key not in (None, data.get("key")):
        return None
    budgets = np.asarray(data["budgets"])
    generator, evaluator = Generator(space, budgets), _evaluator(data.get("evaluator_kind", "paper"), space, data)
    generator.load_state_dict(data["generator"])
    evaluator.load_state_dict(data["evaluator"])
    scored_x = np.asarray(data.get("scored_x", []), dtype=np.int64).reshape(-1, space.n_var)
    scored_accuracy = np.asarray(data.get("scored_accuracy", []), dtype=np.float64)
    return PNAG(space, generator.eval(), evaluator.eval(), budgets, data["key"], scored_x, scored_accuracy)


@dataclass(kw_only=True)
class PnagSearch(Searcher):
    """Algorithm 1 with `termination.evaluations` scored archs to learn from (`init`: random ones, as the paper,
    or the smallest, the largest and the rest spread over cost, `nsga.initial_design`), then one
    generated arch per search budget, answered by inference: its costs come from the table, its
    accuracy is not evaluated unless `score_answers`. With a cached generator for the same space,
    table, accuracy source, number of scored archs, K, seed and training settings, nothing is
    scored or trained: the archs it learned from come back from the cache into the archive, as
    they were scored."""

    budgets_k: int = 10
    init: Literal["cost-uniform", "random"] = "cost-uniform"
    evaluator: Literal["ranknet", "paper"] = "ranknet"
    evaluator_steps: int = 300
    generator_steps: int = 600
    score_answers: bool = False
    cache: str | Path | None = field(default=None, metadata=OWN_FLAG)

    def solve(
        self, problem: ArchProblem, termination: Termination, *, seed: int = 0, progress: Progress | None = None
    ) -> Archive:
        evaluations = termination.evaluations
        archive, space = problem.archive, problem.archive.space
        if not problem.budgets:
            raise HwnasError("pnag generates an arch for a budget: pass --budget")
        if len({b.objective for b in problem.budgets}) != 1:
            raise HwnasError("pnag conditions on one cost: pass budgets of one objective")
        objective = problem.budgets[0].objective

        def cost(x: np.ndarray) -> np.ndarray:  # of the repaired arch: the resolution gene pinned to the table's
            return problem.costs(objective, problem.repair._do(problem, np.asarray(x, dtype=np.int64)))

        # the budgets it is trained for span every cost an arch can have (a table's lowest to highest)
        low = float(problem.costs.lower_bound(objective, problem.allowed_resolutions))
        high = float(problem.costs.upper_bound(objective, problem.allowed_resolutions))
        m = evaluations - (len(problem.budgets) if self.score_answers else 0)
        identity = getattr(problem.accuracy, "identity", problem.accuracy.source)
        trained_as = (
            self.init,
            self.evaluator,
            self.evaluator_steps if self.evaluator == "paper" else None,
            self.generator_steps,
        )
        key = cache_key(space, getattr(problem.costs.table, "meta", {}), identity, m, self.budgets_k, seed, trained_as)
        path = cache_file(self.cache, key)
        model = load(path, space, key) if path is not None else None
        archive.meta["pnag_cache_file"] = str(path) if path is not None else None
        archive.meta["pnag_cache"] = "reused" if model is not None else "trained"
        if model is not None:
            _restore(problem, model)
        else:  # score M archs, learn the evaluator and the generator (Algorithm 1, lines 3-15)
            budgets = np.linspace(low, high, self.budgets_k)
            model = self._train(problem, m, cost, budgets, seed, key)
            if path is not None:
                save(model, path)
        archive.meta["pnag_budget_range"], archive.meta["pnag_scored"] = [low, high], m
        warnings = archive.meta.setdefault("warnings", [])
        for b in problem.budgets:
            if not model.in_range(b.limit):
                warnings.append(
                    f"budget {b} is outside the generator's trained range {low:.4g}-{high:.4g}: "
                    "its embedding is the nearest end's, an extrapolation"
                )
            start = time.perf_counter()
            raw_met = bool(cost(model.greedy(b.limit)[None])[0] <= b.limit)
            generated = problem.repair._do(problem, model.generate(b.limit, cost, seed=seed)[None])
            archive.meta.setdefault("pnag_seconds", []).append(time.perf_counter() - start)
            if self.score_answers and space.decode(generated[0]) not in archive:
                problem.evaluate(generated)
            known = archive.get(space.decode(generated[0]))
            values = {name: float(v[0]) for name, v in _costs(problem, generated).items()}
            values["accuracy"] = known.values["accuracy"] if known is not None else None
            answer = {"budget": str(b), "arch": str(space.decode(generated[0])), "raw_met": raw_met, "values": values}
            archive.meta.setdefault("pnag_answers", []).append(answer)
            archive.meta.setdefault("pnag_generated", []).append(answer["arch"])
        if progress:
            progress(1, 1, archive)
        return archive

    def _train(self, problem: ArchProblem, m: int, cost, budgets: np.ndarray, seed: int, key: str) -> PNAG:
        """Score M archs (drawn as `init` says), learn the evaluator and the generator on them."""
        archive, space = problem.archive, problem.archive.space
        rng = np.random.default_rng(seed)
        _, xu = space.bounds()
        todo = m - len(archive)
        if todo > 0:
            if self.init == "cost-uniform":
                draw = lambda k: rng.integers(0, xu + 1, (k, len(xu)))  # noqa: E731
                problem.evaluate(initial_design(problem, todo, rng, spread=True, draw=draw))
            else:
                problem.evaluate(unarchived(problem, rng.integers(0, xu + 1, (4 * todo, len(xu))), rng)[:todo])
        x = np.array([space.encode(r.arch) for r in archive.records])
        acc = np.array([r.values["accuracy"] for r in archive.records])
        if self.evaluator == "ranknet":
            evaluator = train_ranking_evaluator(space, x, acc, seed=seed)
        else:
            features = torch.as_tensor(space.features(x), dtype=torch.float32)
            evaluator = train_evaluator(features, acc, cost(x), budgets, steps=self.evaluator_steps, seed=seed)
        generator = train_generator(space, evaluator, cost, budgets, steps=self.generator_steps, seed=seed)
        return PNAG(space, generator, evaluator, budgets, key, x, acc)


def _costs(problem: ArchProblem, x: np.ndarray) -> dict[str, np.ndarray]:
    names = {o.name for o in problem.archive.objectives[1:]} | {b.objective for b in problem.budgets}
    return {name: problem.costs(name, x) for name in names}


def _restore(problem: ArchProblem, model: PNAG) -> None:
    """The archs a cached generator learned from, into the archive with their cached scores and
    their costs from the table: nothing is evaluated."""
    archive, space = problem.archive, problem.archive.space
    if model.scored_x is None or not len(model.scored_x):
        return
    costs = _costs(problem, model.scored_x)
    source = f"{problem.accuracy.source} (cached)"
    for i, row in enumerate(model.scored_x):
        values = {name: v[i] for name, v in costs.items()}
        archive.add(space.decode(row), {**values, "accuracy": float(model.scored_accuracy[i])}, source)


def _evaluator(kind: str, space: SearchSpace, data: dict) -> Evaluator | RankingEvaluator:
    """An untrained evaluator of the kind and shape a cache file holds, for its state dict."""
    if kind == "ranknet":
        from hwnas.search.predictors import RankNet

        return RankingEvaluator(RankNet(space).net)
    return Evaluator(int(data["features"]), np.asarray(data["budgets"]))
