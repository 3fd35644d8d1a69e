"""`pareto.png`: accuracy against the first cost, the front, the budget line and the chosen arch."""

from __future__ import annotations

import io
from pathlib import Path

from hwnas.io import atomic_write_bytes
from hwnas.search.archive import Archive, Record
from hwnas.search.budget import Budget
from hwnas.search.objectives import DISPLAY_SCALE


def pareto_png(archive: Archive, *, budgets: list[Budget], chosen: Record, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cost = archive.objectives[1]
    scale = DISPLAY_SCALE.get(cost.name, 1.0)
    metric = archive.meta.get("metric", "accuracy")
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.add_subplot()
    xs = [r.values[cost.name] * scale for r in archive.records]
    ys = [r.values["accuracy"] for r in archive.records]
    ax.scatter(xs, ys, s=12, color="0.65", label=f"evaluated ({len(archive)})")
    front = archive.front()
    ax.plot(
        [r.values[cost.name] * scale for r in front],
        [r.values["accuracy"] for r in front],
        "o-",
        color="tab:blue",
        ms=4,
        label="Pareto front",
    )
    for b in budgets:
        if b.objective == cost.name:
            ax.axvline(b.limit * scale, color="tab:red", ls="--", label=f"budget {b}")
    ax.scatter(
        [chosen.values[cost.name] * scale],
        [chosen.values["accuracy"]],
        s=120,
        marker="*",
        color="tab:orange",
        zorder=5,
        label="chosen",
    )
    ax.set_xlabel(f"{cost.name} ({cost.unit})")
    proxy = metric.startswith("proxy")
    ax.set_ylabel(f"{metric} (a proxy, not accuracy)" if proxy else f"validation {metric} (supernet)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())
