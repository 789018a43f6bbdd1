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
    ax.set_ylabel("hypervolume (fraction of the reference box)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return fig


def time_curves_figure(curves: pd.DataFrame, colours: Mapping[str, tuple], title: str, points: int = 200) -> Figure:
    """Mean regret over seeds per searcher against wall-clock seconds (a run counts once it has a result)."""
    fig, ax = _figure()
    grid = np.linspace(0.0, float(curves["wall_time_s"].max()), points)
    for searcher, colour in colours.items():
        runs = curves[curves["searcher"] == searcher]
        if runs.empty:
            continue
        values = []
        for _, run in runs.groupby("seed"):
            run = run.sort_values("wall_time_s")
            at = np.searchsorted(run["wall_time_s"].to_numpy(), grid, side="right") - 1
            values.append(np.where(at >= 0, run["regret"].to_numpy()[np.maximum(at, 0)], np.nan))
        stacked = np.vstack(values)
        everyone = ~np.isnan(stacked).any(axis=0)  # a mean over fewer runs would jump
        ax.plot(grid[everyone], stacked[:, everyone].mean(axis=0), color=colour, label=searcher)
    ax.set_xlabel("wall-clock seconds since the sweep started")
    ax.set_ylabel("regret")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def epochs_figure(epochs: pd.DataFrame, column: str, labels: Mapping[str, str], colours: Mapping[str, tuple],
                  title: str) -> Figure:
    """``column`` per epoch, one line per trial (a search run), coloured by ``labels[trial_id]`` (e.g. its
    regulariser); ``colours`` maps each label to its colour."""
    fig, ax = _figure()
    shown: set[str] = set()
    for trial_id, run in epochs.groupby("trial_id", sort=False):
        run = run.sort_values("epoch")
        name = labels.get(trial_id, "")
        ax.plot(run["epoch"], run[column], marker="o", markersize=3, color=colours.get(name),
                label=None if name in shown else name, alpha=0.8)
        shown.add(name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label(column))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if shown - {""}:
        ax.legend(fontsize="small")
    return fig


def rank_check_figure(check: Mapping, sets: Sequence[str] = ("spread", "top_k")) -> Figure:
    """Fine-tuned against inherited score of the rank check's sub-networks, one marker per set."""
    fig, ax = _figure()
    models = check["models"]
    for marker, name in zip(("o", "s"), sets):
        ids = check[name]["arch_ids"]
        ax.scatter([models[i]["inherited"] for i in ids], [models[i]["finetuned"] for i in ids], marker=marker,
                   alpha=0.7, label=f"{name} (Kendall τ {check[name]['kendall_tau']:.2f})")
    metric = label(check["metric"])
    ax.set_xlabel(f"inherited {metric} (what the sweep ranked by)")
    ax.set_ylabel(f"fine-tuned {metric} (all val images)")
    ax.set_title("Does the sweep's ranking hold after fine-tuning?")
    ax.legend()
    return fig


def per_class_figure(scores: Mapping[str, Mapping[str, float | None]], title: str) -> Figure:
    """Per-class IoU as grouped horizontal bars, one group per class, one bar per split (``scores``: split →
    class → IoU; a class a split lacks is left out)."""
    splits = list(scores)
    classes = list(next(iter(scores.values())))
    fig = Figure(figsize=(FIGSIZE[0], 0.3 * len(classes) * len(splits) + 1.2), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    height = 0.8 / len(splits)
    for i, split in enumerate(splits):
        values = [np.nan if scores[split].get(c) is None else scores[split][c] for c in classes]
        ax.barh(np.arange(len(classes)) + i * height, values, height=height, label=split)
    ax.set_yticks(np.arange(len(classes)) + height * (len(splits) - 1) / 2, classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig
