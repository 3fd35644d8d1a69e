"""`Archive`: every evaluated arch with all its objective values; JSON on disk; Pareto front,
hypervolume (pymoo), `pick(budgets)` and the high trade-off points (pymoo's decision making).

The first objective is accuracy (maximised); the others are costs (minimised). Each record says
where its accuracy came from: "supernet" (inherited weights, measured on a validation split),
"predictor", or "proxy-flops" / "proxy-params" (not an accuracy at all, and labelled as such).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.files import atomic_write_json, read_json
from hwnas.search.budget import Budget, BudgetError
from hwnas.search.objectives import Objective
from hwnas.space import Arch, SearchSpace

FORMAT = "hwnas-archive"


@dataclass(frozen=True)
class Record:
    arch: Arch
    values: dict[str, float]
    source: str


@dataclass
class Archive:
    """Evaluated archs of one search; objectives[0] is accuracy."""

    space: SearchSpace
    objectives: list[Objective]
    meta: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {str(r.arch): r for r in self.records}

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, arch: Arch) -> bool:
        return str(arch) in self._index

    def get(self, arch: Arch) -> Record | None:
        return self._index.get(str(arch))

    def add(self, arch: Arch, values: dict[str, float], source: str) -> Record:
        """Record an evaluated arch (the first evaluation of an arch wins)."""
        if str(arch) in self._index:
            return self._index[str(arch)]
        missing = [o.name for o in self.objectives if o.name not in values]
        if missing:
            raise HwnasError(f"archive record for {arch} lacks {missing}")
        record = Record(arch, {k: float(v) for k, v in values.items()}, source)
        self.records.append(record)
        self._index[str(arch)] = record
        return record

    def rescore(self, score, records: list[Record] | None = None) -> list[Record]:
        """Replace the accuracy of `records` (default: all) by `score(arch)`, e.g. after the
        supernet they were scored on was adapted; returns the new records in the same order."""
        name, position = self.objectives[0].name, {str(r.arch): i for i, r in enumerate(self.records)}
        new = []
        for old in list(self.records) if records is None else records:
            record = Record(old.arch, {**old.values, name: float(score(old.arch))}, old.source)
            self.records[position[str(old.arch)]] = record
            self._index[str(old.arch)] = record
            new.append(record)
        return new

    # ---- multi-objective views ----------------------------------------------------------------
    def matrix(self, records: list[Record] | None = None) -> np.ndarray:
        """Objective values in minimisation form (accuracy negated), one row per record."""
        rows = self.records if records is None else records
        return np.array(
            [[-r.values[o.name] if o.maximise else r.values[o.name] for o in self.objectives] for r in rows]
        ).reshape(len(rows), len(self.objectives))

    def front(self, records: list[Record] | None = None) -> list[Record]:
        """The non-dominated records (pymoo's non-dominated sorting), by the first cost."""
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        rows = self.records if records is None else records
        if not rows:
            return []
        index = NonDominatedSorting().do(self.matrix(rows), only_non_dominated_front=True)
        return sorted((rows[i] for i in index), key=lambda r: r.values[self.objectives[-1].name])

    def hypervolume(self, reference: dict[str, float]) -> float:
        """Hypervolume of the front against `reference` (objective -> worst value counted)."""
        from pymoo.indicators.hv import HV

        ref = np.array([-reference[o.name] if o.maximise else reference[o.name] for o in self.objectives])
        front = self.matrix(self.front())
        inside = front[(front < ref).all(axis=1)] if len(front) else front
        return float(HV(ref_point=ref)(inside)) if len(inside) else 0.0

    def normalised_hypervolume(self, reference: dict[str, float]) -> float:
        """`hypervolume` with each cost divided by its reference value (so each lies in [0, 1] and
        the reference is 1) and accuracy as it is (reference 0): a unitless number in [0, 1] for an
        accuracy in [0, 1], comparable across objectives and devices."""
        scaled = Archive(space=self.space, objectives=self.objectives)
        for r in self.records:
            values = {k: v / reference[k] if k in reference and reference[k] > 0 and k != "accuracy" else v
                      for k, v in r.values.items()}  # fmt: skip
            scaled.records.append(Record(r.arch, values, r.source))
        unit = {o.name: (reference[o.name] if o.name == "accuracy" else 1.0) for o in self.objectives}
        return scaled.hypervolume(unit)

    def feasible(self, budgets: list[Budget]) -> list[Record]:
        return [r for r in self.records if all(r.values[b.objective] <= b.limit for b in budgets)]

    def pick(self, budgets: list[Budget]) -> Record:
        """The most accurate record that meets every budget (ties: the cheapest by the first budget)."""
        ok = self.feasible(budgets)
        if not ok:
            lowest = ", ".join(f"{b.objective} {min(r.values[b.objective] for r in self.records):.4g}" for b in budgets)
            raise BudgetError(
                f"none of the {len(self)} evaluated subnets meets {', '.join(map(str, budgets))} (lowest: {lowest})"
            )
        first = budgets[0].objective if budgets else self.objectives[-1].name
        return max(ok, key=lambda r: (r.values[self.objectives[0].name], -r.values[first]))

    def trade_offs(self) -> list[Record]:
        """High trade-off points of the front (pymoo `HighTradeoffPoints`); needs >= 3 front points."""
        from pymoo.mcdm.high_tradeoff import HighTradeoffPoints

        front = self.front()
        if len(front) < 3:
            return front
        index = HighTradeoffPoints().do(self.matrix(front))
        return [front[i] for i in (index if index is not None else [])]

    # ---- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "space": self.space.name,
            "space_digest": self.space.digest(),
            "objectives": [{"name": o.name, "maximise": o.maximise} for o in self.objectives],
            "meta": self.meta,
            "records": [
                {"arch": self.space.arch_to_dict(r.arch), "line": str(r.arch), "values": r.values, "source": r.source}
                for r in self.records
            ],
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace) -> Archive:
        data = read_json(path, what="archive")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise HwnasError(f"{path} is not an hwnas archive")
        if data.get("space_digest") != space.digest():
            raise HwnasError(f"archive {path} is for space '{data.get('space')}', not '{space.name}'")
        objectives = [Objective(o["name"], bool(o["maximise"])) for o in data["objectives"]]
        archive = cls(space=space, objectives=objectives, meta=data.get("meta", {}))
        for rec in data["records"]:
            archive.add(space.arch_from_dict(rec["arch"]), rec["values"], rec["source"])
        return archive
