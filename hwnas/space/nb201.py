"""NAS-Bench-201 as a tabular search space: 6 edges of one cell, each an operation; accuracy and
latency are look-ups in a benchmark table with an exact answer for every cell.

The cell string is NAS-Bench-201's (Dong & Yang, ICLR 2020, Fig. 1): node j's input edges from nodes
0..j-1, `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; gene i is edge i in that order. `Benchmark` reads a
table (`cell`, `index`, `*_val`/`*_test` accuracies in %, `latency_ms_<device>` columns; the packaged
one is `hwnas/space/tables/nb201.parquet`, see its README for the sources) and `NB201Space` is the
space of the operations its cells use, so a sub-table restricted to fewer operations is a smaller,
complete space. The space offers the methods the searchers use on `SearchSpace`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import ArchError, HwnasError
from hwnas.files import read_json
from hwnas.space.search_space import one_hot

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # NAS-Bench-201's order
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node), the cell string's order
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))  # the cell's input-to-output paths, as edge indices
NAME = "nb201"


class BenchmarkError(HwnasError):
    """A benchmark table is unreadable, incomplete, or lacks the column asked for."""


@dataclass(frozen=True)
class Cell:
    """One NAS-Bench-201 architecture: the operation on each of the 6 edges."""

    ops: tuple[str, ...]

    def __str__(self) -> str:
        nodes = [[f"{self.ops[i]}~{src}" for i, (to, src) in enumerate(EDGES) if to == j] for j in (1, 2, 3)]
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"cell": str(self)}


def parse_cell(text: str) -> Cell:
    """Inverse of `str(cell)`; anything else is an `ArchError` showing the expected form."""
    nodes = str(text).strip().split("+")
    example = str(Cell(("nor_conv_3x3",) * 6))
    if len(nodes) != 3:
        raise ArchError(f"{text!r} is not a NAS-Bench-201 cell string; expected like '{example}'")
    ops: dict[tuple[int, int], str] = {}
    for j, node in enumerate(nodes, start=1):
        parts = node.strip("|").split("|") if node.startswith("|") and node.endswith("|") else []
        if len(parts) != j:
            raise ArchError(f"{text!r} is not a NAS-Bench-201 cell string: node {j} needs {j} input edge(s)")
        for part in parts:
            found = re.fullmatch(r"(\w+)~(\d)", part)
            if found is None or found.group(1) not in OPS or int(found.group(2)) >= j:
                raise ArchError(f"{text!r}: edge '{part}' is not op~node with an op of {', '.join(OPS)}")
            ops[(j, int(found.group(2)))] = found.group(1)
    if len(ops) != len(EDGES):
        raise ArchError(f"{text!r} names an edge twice; expected like '{example}'")
    return Cell(tuple(ops[e] for e in EDGES))


class NB201Space:
    """The cells whose edges take one of `ops` (NAS-Bench-201: all 5): 6 integer genes."""

    def __init__(self, *, ops: tuple[str, ...] = OPS):
        unknown = [o for o in ops if o not in OPS]
        if unknown or not ops:
            raise BenchmarkError(f"NAS-Bench-201 operations are {', '.join(OPS)}; got {list(ops)}")
        self.name = NAME
        self.ops = tuple(o for o in OPS if o in ops)
        self.description = f"NAS-Bench-201 cells over {', '.join(self.ops)}"
        self.toml: str | None = None
        self._variables = [(f"edge[{i}] ({src}->{to})", self.ops) for i, (to, src) in enumerate(EDGES)]

    # ---- the encoding ---------------------------------------------------------------------------
    @property
    def variables(self) -> list[tuple[str, tuple]]:
        return list(self._variables)

    @property
    def n_var(self) -> int:
        return len(EDGES)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        xu = np.full(self.n_var, len(self.ops) - 1, dtype=np.int64)
        return np.zeros_like(xu), xu

    def encode(self, cell: Cell) -> np.ndarray:
        self.validate(cell)
        return np.array([self.ops.index(o) for o in cell.ops], dtype=np.int64)

    def decode(self, x: np.ndarray | list[int]) -> Cell:
        x = np.asarray(x)
        if x.shape != (self.n_var,):
            raise ArchError(f"an encoded NAS-Bench-201 cell has {self.n_var} integers, got shape {x.shape}")
        if not all(int(g) == g and 0 <= g < len(self.ops) for g in x.tolist()):
            raise ArchError(f"encoded cell {x.tolist()} is outside 0..{len(self.ops) - 1}")
        return Cell(tuple(self.ops[int(g)] for g in x.tolist()))

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Every vector is its cell's only encoding (no genes are ever inactive)."""
        return np.array(x, dtype=np.int64)

    def depth_genes(self) -> list[tuple[int, tuple[int, ...]]]:
        return []

    def features(self, x: np.ndarray) -> np.ndarray:
        """What predictors learn from: the one-hot edges, then the operations of the cell that
        computes anything — the count of each operation on edges of an input-to-output path with no
        `none` on it (an edge on no such path is dead: its output is zeroed or never reaches the
        output node) — and a flag for a cell with no such path (its output is all zeros)."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.n_var)
        alive = np.ones_like(x, dtype=bool) if "none" not in self.ops else x != self.ops.index("none")
        live_path = np.stack([alive[:, list(p)].all(axis=1) for p in PATHS], axis=1)
        live_edge = np.zeros_like(alive)
        for i, path in enumerate(PATHS):
            live_edge[:, list(path)] |= live_path[:, i : i + 1]
        counts = np.stack([((x == k) & live_edge).sum(axis=1) for k in range(len(self.ops))], axis=1)
        dead = ~live_path.any(axis=1, keepdims=True)
        return np.hstack([one_hot(self, x), counts, dead]).astype(np.float32)

    def functions(self, x: np.ndarray) -> list[str]:
        """What each encoded cell computes, written canonically: node 0 is `x`; `skip_connect` passes
        its input's terms on, `none` drops them, any other operation is a term `op(input)` (even of a
        zero input: a convolution's BatchNorm makes that a constant); a node is the sorted sum of its
        terms. Two cells with the same string are one network wired two ways (isomorphic): the
        benchmark trained each separately, so their accuracies differ only by training noise. The
        form errs one way only: an `avg_pool_3x3` of a zero input is kept as a term, so a few cells
        that compute the same thing get different strings; never one string for two networks."""
        rows = np.asarray(x, dtype=np.int64).reshape(-1, self.n_var)
        out = []
        for row in rows:
            node: dict[int, list[str]] = {0: ["x"]}
            for j in (1, 2, 3):
                terms: list[str] = []
                for i, (to, src) in enumerate(EDGES):
                    op = self.ops[row[i]] if to == j else "none"
                    if op == "skip_connect":
                        terms += node[src]
                    elif op != "none":
                        terms.append(f"{op}({' + '.join(node[src])})")
                node[j] = sorted(terms)
            out.append(" + ".join(node[3]) or "0")
        return out

    def every_cell(self) -> np.ndarray:
        """Every encoded cell, row r the cell of code r (`code`): a `Benchmark`'s row r."""
        return np.array(list(itertools.product(range(len(self.ops)), repeat=self.n_var)), dtype=np.int64)

    def code(self, x: np.ndarray) -> np.ndarray:
        """Row-major integer of each encoded cell (base len(ops)): a table's row key."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, self.n_var)
        return x @ (len(self.ops) ** np.arange(self.n_var - 1, -1, -1))

    # ---- choosing cells -------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Cell:
        return self.decode(rng.integers(0, len(self.ops), self.n_var))

    def min(self) -> Cell:
        return self.decode(self.bounds()[0])

    def max(self) -> Cell:
        return self.decode(self.bounds()[1])

    def mutate(self, cell: Cell, rng: np.random.Generator, prob: float = 0.1) -> Cell:
        x = self.encode(cell)
        hit = rng.random(self.n_var) < max(prob, 1 / self.n_var)
        x[hit] = rng.integers(0, len(self.ops), self.n_var)[hit]
        return self.decode(x)

    def crossover(self, a: Cell, b: Cell, rng: np.random.Generator) -> Cell:
        xa, xb = self.encode(a), self.encode(b)
        return self.decode(np.where(rng.random(self.n_var) < 0.5, xa, xb))

    def size(self) -> int:
        return len(self.ops) ** self.n_var

    def pick(self, choice: str, seed: int = 0) -> Cell:
        """min, max, random, a cell .json file or a cell string."""
        if choice in ("min", "max"):
            return self.min() if choice == "min" else self.max()
        if choice == "random":
            return self.sample(np.random.default_rng(seed))
        if choice.endswith(".json") or Path(choice).exists():
            return self.load_arch(choice)
        return self.parse(choice)

    # ---- validation and files -------------------------------------------------------------------
    def validate(self, cell: Cell) -> Cell:
        if not isinstance(cell, Cell) or len(cell.ops) != self.n_var:
            raise ArchError(f"not a NAS-Bench-201 cell: {cell!r}")
        outside = [o for o in cell.ops if o not in self.ops]
        if outside:
            raise ArchError(f"cell {cell} uses {', '.join(sorted(set(outside)))}; this space has {', '.join(self.ops)}")
        return cell

    def parse(self, text: str) -> Cell:
        return self.validate(parse_cell(text))

    def arch_to_dict(self, cell: Cell) -> dict[str, Any]:
        return {"space": self.name, **self.validate(cell).to_dict()}

    def arch_from_dict(self, data: Any) -> Cell:
        if not isinstance(data, dict) or set(data) - {"space", "cell", "search"} or "cell" not in data:
            raise ArchError('a NAS-Bench-201 arch is a JSON object {"space": "nb201", "cell": "|...|"}')
        if data.get("space", self.name) != self.name:
            raise ArchError(f"arch is for space '{data['space']}', not '{self.name}'")
        return self.parse(data["cell"])

    def load_arch(self, path: str | Path) -> Cell:
        return self.arch_from_dict(read_json(path, what="arch file", error=ArchError))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps({"nb201": list(self.ops)}).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"NB201Space(ops={self.ops})"


def packaged_benchmark() -> Path:
    """The NAS-Bench-201 table shipped with hwnas (see hwnas/space/tables/README.md)."""
    return Path(str(resources.files("hwnas.space") / "tables" / "nb201.parquet"))


class Benchmark:
    """A NAS-Bench-201 table: one row per cell, looked up by encoded cell (vectorised)."""

    def __init__(self, frame, *, source: str):
        self.source = source
        for column in ("cell", "index"):
            if column not in frame.columns:
                raise BenchmarkError(f"benchmark {source} has no '{column}' column")
        self.metrics = [c for c in frame.columns if c.endswith(("_val", "_test"))]
        self.devices = [c[len("latency_ms_") :] for c in frame.columns if c.startswith("latency_ms_")]
        if not self.metrics or not self.devices:
            raise BenchmarkError(f"benchmark {source} needs *_val/*_test accuracy and latency_ms_<device> columns")
        try:
            cells = [parse_cell(c) for c in frame["cell"]]
        except ArchError as exc:
            raise BenchmarkError(f"benchmark {source}: {exc}") from None
        self.space = NB201Space(ops=tuple({o for c in cells for o in c.ops}))
        codes = self.space.code(np.array([self.space.encode(c) for c in cells]))
        if len(set(codes.tolist())) != len(codes):
            raise BenchmarkError(f"benchmark {source} lists a cell twice")
        if len(codes) != self.space.size():
            raise BenchmarkError(
                f"benchmark {source} has {len(codes)} rows but its operations ({', '.join(self.space.ops)}) "
                f"make {self.space.size()} cells: every cell needs a row"
            )
        self.frame = frame.iloc[np.argsort(codes)].reset_index(drop=True)  # row r is the cell with code r
        numeric = [*self.metrics, *(f"latency_ms_{d}" for d in self.devices)]
        if self.frame[numeric].isna().any().any():
            raise BenchmarkError(f"benchmark {source} has empty values in {numeric}")
        self.meta = {"benchmark": source, "digest": self._digest()}

    @classmethod
    def load(cls, path: str | Path | None = None) -> Benchmark:
        import pandas as pd

        path = Path(path) if path is not None else packaged_benchmark()
        if not path.is_file():
            raise BenchmarkError(f"benchmark file {path} does not exist")
        try:
            frame = pd.read_parquet(path, use_threads=False)  # see LatencyTable.load (apache/arrow#34314)
        except Exception as exc:  # pyarrow raises many kinds for a file that is not Parquet
            raise BenchmarkError(
                f"benchmark file {path} is not a readable Parquet table ({type(exc).__name__})"
            ) from None
        return cls(frame, source=str(path))

    def _digest(self) -> str:
        import pandas as pd

        return hashlib.sha256(pd.util.hash_pandas_object(self.frame, index=False).values.tobytes()).hexdigest()[:16]

    def column(self, name: str, x: np.ndarray) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=np.float64)[self.space.code(x)]

    def latency_column(self, device: str) -> str:
        if device not in self.devices:
            raise BenchmarkError(
                f"benchmark {self.source} has no latency column for device '{device}' (latency_ms_{device}); "
                f"devices: {', '.join(self.devices)}"
            )
        return f"latency_ms_{device}"

    def metric_column(self, metric: str) -> str:
        if metric not in self.metrics:
            raise BenchmarkError(
                f"benchmark {self.source} has no metric '{metric}'; metrics: {', '.join(self.metrics)}"
            )
        return metric

    def index(self, cell: Cell) -> int:
        """NAS-Bench-201's own index of `cell`."""
        return int(self.frame["index"].iloc[int(self.space.code(self.space.encode(cell))[0])])

    def cell(self, index: int) -> Cell:
        rows = self.frame.index[self.frame["index"] == index]
        if len(rows) != 1:
            raise BenchmarkError(f"benchmark {self.source} has no architecture index {index}")
        return parse_cell(self.frame["cell"].iloc[rows[0]])


@dataclass
class BenchmarkAccuracy:
    """Accuracy as the table's `metric` column (%, divided by 100 so fronts read like the others')."""

    benchmark: Benchmark
    metric: str = "cifar100_val"
    source: str = "benchmark"

    def __post_init__(self) -> None:
        self.benchmark.metric_column(self.metric)

    def many(self, x: np.ndarray) -> np.ndarray:
        return self.benchmark.column(self.metric, x) / 100

    def __call__(self, cell: Cell) -> float:
        return float(self.many(self.benchmark.space.encode(cell)[None])[0])


class BenchmarkCosts:
    """Latency on one device of the table (its `latency_ms_<device>` column), as `Costs` offers it."""

    energy_source = None

    def __init__(self, benchmark: Benchmark, *, device: str):
        self.benchmark, self.device = benchmark, device
        self.column = benchmark.latency_column(device)
        self.space = benchmark.space
        self.table = self  # what a cached PNAG generator keys on: `table.meta`
        self.meta = {**benchmark.meta, "device": device}

    def _check(self, name: str) -> None:
        if name != "latency":
            raise BenchmarkError(f"a NAS-Bench-201 table has latency only, not '{name}'")

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        self._check(name)
        return self.benchmark.column(self.column, x)

    def lower_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        """The exact lowest latency of any cell (the table has them all)."""
        self._check(name)
        return float(self.benchmark.frame[self.column].min())

    def upper_bound(self, name: str, allowed_resolutions: list[int] | None = None) -> float:
        self._check(name)
        return float(self.benchmark.frame[self.column].max())
