"""`pareto.png`: accuracy against each cost, one panel a cost, with the budgets and the chosen arch.

With several costs the non-dominated set is a front in N dimensions; drawn against one cost it is
not a curve, so each panel draws that panel's own two-objective front as a step line and marks the
N-objective front's members as points. Every budget is drawn in the panel of its objective.
"""

from __future__ import annotations

import io
from pathlib import Path

from hwnas.files import atomic_write_bytes
from hwnas.search.archive import Archive, Record
from hwnas.search.budget import Budget
from hwnas.search.objectives import DISPLAY_SCALE, Objective


def pareto_png(archive: Archive, *, budgets: list[Budget], chosen: Record, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    costs = archive.objectives[1:]
    fig = Figure(figsize=(5.2 * len(costs) + 1.2, 4.4), dpi=120)
    axes = fig.subplots(1, len(costs), squeeze=False)[0]
    front = {str(r.arch) for r in archive.front()}
    score = _score(archive)
    for ax, cost in zip(axes, costs, strict=True):
        _panel(ax, archive, cost, budgets, chosen, front, several=len(costs) > 1, score=score)
    axes[0].set_ylabel(score[1])
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _score(archive: Archive) -> tuple[str, str, float]:
    """(short name, axis label, display scale) of what the search ranked: accuracy, or a proxy."""
    metric = archive.meta.get("metric", "accuracy")
    if metric.startswith("proxy-"):
        proxy = Objective(metric.removeprefix("proxy-"))  # units and scales as the CLI shows them
        return proxy.name, f"{proxy.name}, {proxy.unit} (ranked as a proxy, not accuracy)", proxy.scale
    source = archive.meta.get("accuracy_source", "supernet")
    return "accuracy", f"validation {metric} ({source})", 1.0


def _panel(ax, archive: Archive, cost, budgets, chosen: Record, front: set[str], several: bool, score) -> None:
    scale = DISPLAY_SCALE.get(cost.name, 1.0)
    name, _, y_scale = score

    def xy(records: list[Record]) -> tuple[list[float], list[float]]:
        return [r.values[cost.name] * scale for r in records], [r.values["accuracy"] * y_scale for r in records]

    ax.scatter(*xy(archive.records), s=12, color="0.7", label=f"evaluated ({len(archive)})")
    pair = Archive(space=archive.space, objectives=[archive.objectives[0], cost])
    pair.records.extend(archive.records)
    xs, ys = xy(pair.front())
    ax.step(xs, ys, where="post", color="tab:blue", lw=1.2, label=f"front in {name} and {cost.name}")
    if several:
        members = [r for r in archive.records if str(r.arch) in front]
        ax.scatter(*xy(members), s=22, facecolors="none", edgecolors="tab:green", label="front in all objectives")
    furthest = max(r.values[cost.name] for r in archive.records) * scale
    for b in budgets:
        if b.objective == cost.name and b.limit * scale <= 1.5 * furthest:
            ax.axvline(b.limit * scale, color="tab:red", ls="--", label=f"budget {b}")
        elif b.objective == cost.name:  # drawn to scale it would squeeze every point against the left edge
            ax.plot([], [], color="tab:red", ls="--", label=f"budget {b}: beyond the axis, every point meets it")
    ax.scatter(*xy([chosen]), s=120, marker="*", color="tab:orange", zorder=5, label="chosen")
    ax.set_xlabel(f"{cost.name} ({cost.unit})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
