"""Few-shot latency for a new device: from the latencies of devices already measured and a handful
of end-to-end measurements on the new one, its latency everywhere (issue 37; the problem HELP,
Lee et al., NeurIPS 2021, solves by meta-learning, its Table 3 at 10 samples).

The predictor is Bayesian linear regression with its prior learned from the source devices
(empirical Bayes; the "meta-training"). A device's latency over the cells, divided by its mean, is
modelled as `features @ w`: the architecture's features (`NB201Space.features`: each edge's
operation, the live operations' counts, a dead-cell flag: a per-operation cost model) beside the
source devices' own normalised latencies; fitted on all of a device's cells, that model ranks them at
0.976-0.9998 (`bench.fewshot`'s ceiling rows). Each source device's least-squares architecture weights
give the prior's mean and covariance over the architecture part (plus `tau`^2 on the diagonal), the
source latencies' weights have prior variance `source_var`, the measurements noise `sigma`^2; the
posterior mean from the N measured cells predicts all of them. The three settings are chosen by
leave-one-source-out on the sources themselves (`meta_select`: each source in turn predicted from
N of its cells and the other sources), never on the new device.

Which N to measure (`CHOICES`): `design` (the default) chooses them one at a time from a random pool
of cells, each the one whose latency the learned prior and the cells chosen so far predict least
surely (`Regression.design`: greedy Bayesian D-optimal design; it needs the prior, not the device);
`spread` takes one cell from each of N equal slices of the cells ordered by the sources' mean log
latency; `random` draws them uniformly. At 10 samples `design` ranks titan_rtx_256, fpga and raspi4
better than either and gold_6226 a little worse than `spread` (`bench.fewshot`, docs/results).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from hwnas.errors import HwnasError

CHOICES = ("design", "spread", "random")
SOURCE_CHOICES = ("spread", "random")  # the choices made from the sources' latencies alone
DESIGN_POOL = 2000  # random cells the design chooses among (each seed its own pool)
TAUS, SIGMAS, SOURCE_VARS = (0.003, 0.01, 0.03), (0.03, 0.1, 0.3), (0.0, 0.01, 0.1)
META_SEEDS = 3  # draws of N cells per held-out source when choosing the settings
MIN_SAMPLES, MIN_SOURCES = 2, 2  # a mean and a slope; a source to learn from and one to check on


Progress = Callable[[int, int], None]


class TransferError(HwnasError):
    """A few-shot table cannot be made from what was given."""


@dataclass(frozen=True)
class Settings:
    """The prior's extra spread on the architecture weights (`tau`), the source latencies' weight
    variance (`source_var`) and the measurement noise (`sigma`), all on latencies divided by their mean."""

    tau: float
    sigma: float
    source_var: float


def check(samples: int, cells: int, sources: int) -> None:
    """Refuse, in one line, a few-shot table that cannot be made."""
    if sources < MIN_SOURCES:
        raise TransferError(
            f"few-shot latency learns from other devices of the same space: it needs at least {MIN_SOURCES} "
            f"measured ones (one to learn from, one to check its settings on), got {sources}"
        )
    if not MIN_SAMPLES <= samples < cells:
        raise TransferError(
            f"--samples must be at least {MIN_SAMPLES} (a mean and a slope) and fewer than the {cells} cells, got "
            f"{samples}"
        )


def choose_cells(sources: np.ndarray, samples: int, seed: int, how: str = "spread") -> np.ndarray:
    """Indices of the `samples` cells to measure, given the sources' latencies (cells x devices)."""
    if how not in SOURCE_CHOICES:
        raise TransferError(f"unknown cell choice '{how}'; allowed: {', '.join(SOURCE_CHOICES)}")
    rng = np.random.default_rng(seed)
    if how == "random":
        return np.sort(rng.choice(len(sources), samples, replace=False))
    logs = np.log(sources)
    order = np.argsort(((logs - logs.mean(0)) / logs.std(0)).mean(1), kind="stable")
    edges = np.linspace(0, len(order), samples + 1).astype(int)
    return np.sort(order[[rng.integers(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]])


class Regression:
    """The cells' design (architecture features, then each source's latencies divided by their mean)
    and each source's least-squares architecture weights, computed once for every prediction."""

    def __init__(self, features: np.ndarray, sources: np.ndarray):
        self.arch = np.hstack([np.ones((len(features), 1)), features.astype(np.float64)])
        self.scaled = sources / sources.mean(0)
        self.weights = np.linalg.lstsq(self.arch, self.scaled, rcond=None)[0].T  # one row per source

    def prior(self, settings: Settings, use: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The prior's mean and covariance over the architecture weights, then the weights of the
        sources `use` (module docstring)."""
        weights, n_arch = self.weights[use], self.arch.shape[1]
        mean = np.concatenate([weights.mean(0), np.zeros(len(use))])
        cov = np.zeros((n_arch + len(use), n_arch + len(use)))
        cov[:n_arch, :n_arch] = np.cov(weights.T) + settings.tau**2 * np.eye(n_arch)
        cov[n_arch:, n_arch:] = settings.source_var * np.eye(len(use))
        return mean, cov

    def rows(self, cells: np.ndarray | slice, use: list[int]) -> np.ndarray:
        """The design rows of `cells`: architecture features, then the sources `use`."""
        return np.hstack([self.arch[cells], self.scaled[cells][:, use]])

    def predict(self, cells: np.ndarray, measured_ms: np.ndarray, settings: Settings, use: list[int] | None = None):
        """Every cell's latency (ms) from `measured_ms` at `cells`, learning from the sources `use`
        (default all): the posterior mean of the empirical-Bayes regression (module docstring)."""
        use = list(range(self.scaled.shape[1])) if use is None else use
        mean, prior = self.prior(settings, use)
        scale = float(np.mean(measured_ms))
        seen = self.rows(cells, use)
        gram = seen @ prior @ seen.T + settings.sigma**2 * np.eye(len(cells))
        posterior = mean + prior @ seen.T @ np.linalg.solve(gram, measured_ms / scale - seen @ mean)
        return self.rows(slice(None), use) @ posterior * scale

    def design(self, samples: int, settings: Settings, seed: int, use: list[int] | None = None) -> np.ndarray:
        """Indices of `samples` cells chosen one at a time, each the cell of a random pool (of
        `DESIGN_POOL`, at least ten per sample) whose latency the prior and the cells chosen so far
        predict least surely: the largest posterior predictive variance, greedy Bayesian D-optimal
        design for a linear model (Chaloner & Verdinelli, Statistical Science 1995), which needs no
        measurement to choose. A space no bigger than the pool is its own pool: every seed gives
        the same cells."""
        use = list(range(self.scaled.shape[1])) if use is None else use
        _, cov = self.prior(settings, use)
        rng = np.random.default_rng(seed)
        pool = rng.choice(len(self.arch), min(len(self.arch), max(DESIGN_POOL, 10 * samples)), replace=False)
        rows, chosen = self.rows(pool, use), []
        variance = np.einsum("ij,jk,ik->i", rows, cov, rows)
        for _ in range(samples):
            best = int(np.argmax(variance))
            chosen.append(best)
            spread = cov @ rows[best]
            gain = spread @ rows[best] + settings.sigma**2
            cov = cov - np.outer(spread, spread) / gain  # the posterior after measuring `best`
            variance = variance - (rows @ spread) ** 2 / gain
            variance[chosen] = -np.inf
        return np.sort(pool[chosen])

    def choose(
        self, sources: np.ndarray, samples: int, settings: Settings, seed: int, how: str, use: list[int] | None = None
    ) -> np.ndarray:
        """The cells to measure: `design` from the prior, `spread` or `random` from the sources."""
        if how == "design":
            return self.design(samples, settings, seed, use)
        return choose_cells(sources if use is None else sources[:, use], samples, seed, how)


def meta_select(
    model: Regression, sources: np.ndarray, samples: int, how: str, progress: Progress | None = None
) -> tuple[Settings, float]:
    """The settings under which each source device, predicted from `samples` of its cells (chosen
    `how`) and the other sources, is ranked best (mean Spearman rho), and that rho; `progress(done,
    total)` after each setting tried."""
    splits = [(held, [j for j in range(sources.shape[1]) if j != held]) for held in range(sources.shape[1])]
    best: tuple[Settings, float] | None = None
    grid = list(itertools.product(TAUS, SIGMAS, SOURCE_VARS))
    for done, (tau, sigma, source_var) in enumerate(grid, start=1):
        settings = Settings(tau, sigma, source_var)
        rhos = []
        for (held, rest), seed in itertools.product(splits, range(META_SEEDS)):
            cells = model.choose(sources, samples, settings, 1000 + seed, how, rest)
            rhos.append(
                stats.spearmanr(model.predict(cells, sources[cells, held], settings, rest), sources[:, held])[0]
            )
        if best is None or np.mean(rhos) > best[1]:
            best = (settings, float(np.mean(rhos)))
        if progress is not None:
            progress(done, len(grid))
    return best


@dataclass(frozen=True)
class Transfer:
    """A predicted latency column: every cell's `predicted_ms`, `measured` true for the cells whose
    latency was looked up, what it was predicted from and the settings meta-selected on the sources."""

    device: str
    sources: list[str]
    samples: int
    seed: int
    choice: str
    settings: Settings
    meta_spearman: float
    predicted_ms: np.ndarray
    measured: np.ndarray
    checked_rho: float | None = None  # against the device's own full column, where the file has one

    def spearman(self, truth: np.ndarray) -> float:
        """Rank correlation of the prediction with the device's true latencies over every cell."""
        return float(stats.spearmanr(self.predicted_ms, truth)[0])

    def provenance(self) -> dict:
        """What the table was predicted from, for every output that uses it."""
        return {
            "predicted": True, "device": self.device, "method": "few-shot empirical-Bayes regression",
            "sources": self.sources, "samples": self.samples, "seed": self.seed, "choice": self.choice,
            "settings": vars(self.settings), "meta_spearman": self.meta_spearman,
        }  # fmt: skip


def fewshot(
    features: np.ndarray,
    latencies: dict[str, np.ndarray],
    device: str,
    *,
    samples: int,
    seed: int = 0,
    choice: str = "design",
    sources: list[str] | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> Transfer:
    """Predict `device`'s latency column from `samples` of its own values and the other columns of
    `latencies` (or `sources`), for cells described by `features` (one row per cell); `settings`
    replaces their leave-one-source-out choice (`meta_select`, which depends on the sources only)."""
    if device not in latencies:
        raise TransferError(f"no latency column for device '{device}'; devices: {', '.join(latencies)}")
    if choice not in CHOICES:
        raise TransferError(f"unknown cell choice '{choice}'; allowed: {', '.join(CHOICES)}")
    names = [d for d in (sources or latencies) if d != device]
    unknown = [d for d in names if d not in latencies]
    if unknown:
        raise TransferError(f"unknown source device(s) {', '.join(unknown)}; devices: {', '.join(latencies)}")
    check(samples, len(features), len(names))
    source = np.stack([np.asarray(latencies[d], dtype=np.float64) for d in names], axis=1)
    if not (np.isfinite(source).all() and (source > 0).all()):
        raise TransferError("every source latency must be a positive number")
    model = Regression(features, source)
    if settings is None:
        settings, meta = meta_select(model, source, samples, choice, progress)
    else:
        meta = float("nan")
    cells = model.choose(source, samples, settings, seed, choice)
    measured_ms = np.asarray(latencies[device], dtype=np.float64)[cells]
    predicted = model.predict(cells, measured_ms, settings)
    predicted[cells] = measured_ms  # a measured cell keeps its measurement
    mask = np.zeros(len(features), dtype=bool)
    mask[cells] = True
    return Transfer(device, names, samples, seed, choice, settings, meta, predicted, mask)


def transfer_benchmark(
    benchmark: str | Path | None,
    device: str,
    *,
    samples: int,
    seed: int = 0,
    choice: str = "design",
    sources: list[str] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> Transfer:
    """`hwnas lut transfer`: `device`'s column of a NAS-Bench-201 table (default the packaged one)
    predicted from `samples` of its cells and the table's other `latency_ms_*` columns (or
    `sources`), written to `out` (`write_transfer`) if given. The file holds the device's real
    column too, so the transfer is also checked against all of it (`checked_rho`)."""
    from hwnas.files import writable_file
    from hwnas.space.nb201 import Benchmark

    if out is not None:
        writable_file(out, what="--out file")
    table = Benchmark.load(benchmark)
    table.latency_column(device)
    space = table.space
    x = space.every_cell()
    latencies = {d: table.column(f"latency_ms_{d}", x) for d in table.devices}
    transfer = fewshot(space.features(x), latencies, device, samples=samples, seed=seed, choice=choice,
                       sources=sources, progress=progress)  # fmt: skip
    transfer = replace(transfer, checked_rho=transfer.spearman(latencies[device]))
    if out is not None:
        write_transfer(transfer, table.frame["cell"].tolist(), out)
    return transfer


def write_transfer(transfer: Transfer, cells: list[str], out: str | Path) -> None:
    """One row per cell (`cell`, predicted `latency_ms`, `measured`), what it was predicted from in
    the file's metadata (`hwnas`), written whole or not at all."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hwnas.files import atomic_write_bytes

    frame = pa.table({"cell": cells, "latency_ms": transfer.predicted_ms, "measured": transfer.measured})
    frame = frame.replace_schema_metadata({"hwnas": json.dumps(transfer.provenance())})
    buffer = io.BytesIO()
    pq.write_table(frame, buffer)
    atomic_write_bytes(out, buffer.getvalue())
