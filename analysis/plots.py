"""The report's figures as PNG bytes, drawn with matplotlib's Agg canvas (no pyplot state).

Every searcher keeps one colour across all figures (:func:`searcher_colours`).
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.pareto import feasible_rows, pareto_front

FIGSIZE = (6.4, 4.2)
DPI = 110
LABELS = {
    "accuracy": "accuracy (%)",
    "miou": "mIoU",
    "flops": "FLOPs",
    "latency_ms": "latency (ms)",
    "params": "parameters",
}


def label(column: str) -> str:
    return LABELS.get(column, column)


def searcher_colours(searchers: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per searcher (tab10, in sorted name order)."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(searchers))}


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def pareto_figure(
    df: pd.DataFrame,
    metric: str,
    mode: str,
    cost: str,
    colours: Mapping[str, tuple],
    limit: float | None = None,
) -> Figure:
    """Feasible trials of every searcher (all seeds, faint) and each searcher's front as a staircase."""
    fig, ax = _figure()
    for searcher, colour in colours.items():
        rows = df[df["searcher"] == searcher]
        front = pareto_front(rows, [(cost, "min"), (metric, mode)])
        feasible = feasible_rows(rows)
        ax.scatter(feasible[cost], feasible[metric], s=8, color=colour, alpha=0.25, linewidths=0)
        ax.plot(front[cost], front[metric], drawstyle="steps-post", marker="o", ms=3.5, color=colour, label=searcher)
    costs = df[cost].astype(float)
    costs = costs[np.isfinite(costs)]
    if len(costs) and costs.min() > 0 and costs.max() / costs.min() > 30:
        ax.set_xscale("log")
    if limit is not None:
        ax.axvline(limit, color="0.3", linestyle="--", linewidth=1, label=f"constraint ≤ {limit:g}")
    ax.set_xlabel(label(cost))
    ax.set_ylabel(label(metric))
    ax.set_title(f"Pareto fronts: {label(metric)} vs {label(cost)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def curves_figure(
    summary: pd.DataFrame,
    ylabel: str,
    colours: Mapping[str, tuple],
    title: str,
    reference: float | None = None,
) -> Figure:
    """Mean over seeds per searcher with the interquartile band (from ``summarise_curves``),
    drawn as far as every seed of the searcher got."""
    fig, ax = _figure()
    for searcher, colour in colours.items():
        rows = summary[summary["searcher"] == searcher]
        rows = rows[rows["seeds"] == rows["seeds"].max()]  # a mean over fewer seeds would jump
        if rows.empty:
            continue
        ax.plot(rows["evaluations"], rows["mean"], color=colour, label=searcher)
        ax.fill_between(rows["evaluations"], rows["q25"], rows["q75"], color=colour, alpha=0.2, linewidth=0)
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1, label=f"optimum {reference:g}")
    ax.set_xlabel("feasible evaluations")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def hypervolume_figure(hypervolumes: pd.DataFrame, colours: Mapping[str, tuple], title: str) -> Figure:
    """Mean hypervolume per searcher (bar, ± std over seeds) with each seed as a dot."""
    fig, ax = _figure()
    names = [s for s in colours if s in set(hypervolumes["searcher"])]
    for x, searcher in enumerate(names):
        values = hypervolumes.loc[hypervolumes["searcher"] == searcher, "hypervolume"].to_numpy(dtype=float)
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.bar(x, values.mean(), yerr=spread, color=colours[searcher], alpha=0.7, capsize=4)
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, s=10, color="0.15", zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("normalised hypervolume")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return fig
