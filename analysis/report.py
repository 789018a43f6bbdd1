"""One self-contained HTML report of a sweep: settings, ranking, plots, best architectures.

Every plot is embedded in the HTML as a base64 ``data:`` URI, so the file opens
offline on its own, and is also written as a PNG into ``<stem>_plots/`` beside
the HTML; each embedded image links to its file. :func:`write_report` renders
everything first and only then replaces the previous report, so a failure
leaves what was on disk untouched.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from analysis.curves import best_so_far, proposal_counts, ranking_table, summarise_curves
from analysis.pareto import MODES, check_columns, feasible_rows, hypervolume_table, ideal_scale, reference_point
from analysis.plots import (
    curves_figure,
    epochs_figure,
    hypervolume_figure,
    label,
    pareto_figure,
    per_class_figure,
    rank_check_figure,
    searcher_colours,
    time_curves_figure,
    to_png,
)
from analysis.regret import MIN_SEEDS, compare
from analysis.regret import optimum as reference_optimum
from raynas.errors import UserError, check_choice

PARETO_COSTS = ("flops", "latency_ms")
HYPERVOLUME_COSTS = ("latency_ms", "flops", "params")


@dataclass(frozen=True)
class ReportPlot:
    name: str  # file stem of the PNG
    title: str
    caption: str
    png: bytes


@dataclass
class SweepAnalysis:
    """What the report shows, computed from the tidy trials table and the sweep settings."""

    metric: str
    mode: str
    optimum: float | None
    ranking: pd.DataFrame
    proposals: pd.DataFrame
    best_architectures: pd.DataFrame
    hypervolume_note: str
    regret: pd.DataFrame = field(default_factory=pd.DataFrame)  # per searcher and budget, with 95% intervals
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # per budget and pair: distinguishable or not
    latency_note: str = ""
    models: list[dict] = field(default_factory=list)  # fine-tuned winners (``metrics.json`` of each)
    noise: dict | None = None  # how much one architecture's score moves with the images scoring it
    spread: float | None = None  # the standard deviation of the metric over the sweep's evaluated sub-networks
    searcher_bests: dict[str, float] = field(default_factory=dict)  # each searcher's best feasible value, all seeds
    rank_check: dict | None = None  # ``raynas rank-check``'s result: how far the ranking holds after fine-tuning
    plots: list[ReportPlot] = field(default_factory=list)
    model_plots: list[ReportPlot] = field(default_factory=list)  # per model: test examples, per-class IoU
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (plot name, why)


def _present(df: pd.DataFrame, *columns: str) -> bool:
    """The ``columns`` exist and some feasible trial has finite values in all of them."""
    return all(c in df.columns for c in columns) and not feasible_rows(df, columns).empty


def objective(df: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[str, str]:
    """The sweep's ``(metric, mode)``: from the settings, else ``miou``/``accuracy``, maximised."""
    metric = settings.get("metric") or next((c for c in ("miou", "accuracy") if c in df.columns), None)
    if metric is None:
        raise UserError(
            f"settings name no 'metric' and the results have neither 'miou' nor 'accuracy': {sorted(df.columns)}"
        )
    mode = check_choice("settings.mode", settings.get("mode", "max"), MODES)
    check_columns(df, ("searcher", "seed", "order", metric))
    return metric, mode


def best_architectures(df: pd.DataFrame, metric: str, mode: str, top_k: int) -> pd.DataFrame:
    """The ``top_k`` best feasible architectures (one row per ``arch_id``) with metrics, config and finders."""
    rows = feasible_rows(df, [metric]).sort_values(metric, ascending=(mode == "min"), kind="stable")
    if "arch_id" in rows.columns:
        top = rows.drop_duplicates("arch_id").head(top_k)
        finders = rows[rows["arch_id"].isin(top["arch_id"])].groupby("arch_id")["searcher"].unique()
        top = top.assign(found_by=top["arch_id"].map(lambda a: ", ".join(sorted(map(str, finders[a])))))
    else:
        top = rows.head(top_k).assign(found_by=lambda r: r["searcher"])
    columns = ["arch_id"] if "arch_id" in top.columns else []
    columns += [metric, *(c for c in HYPERVOLUME_COSTS if c in top.columns), "found_by"]
    columns += [c for c in top.columns if str(c).startswith("config/")]
    top = top[columns].reset_index(drop=True)
    top.index = top.index + 1
    return top.rename_axis("rank").reset_index()


def _optimum(df: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[float | None, str]:
    """The reference best value for regret and what it is (see ``analysis.regret.optimum``), or None and why."""
    try:
        value, source = reference_optimum(dict(settings), df)
    except UserError as err:
        return None, f"no optimum to measure regret against: {err}"
    if source == "objective":
        return value, "the best feasible value of the objective (e.g. the benchmark table's best entry)"
    return value, "the best feasible trial of the sweep"


def _pareto_plots(df, metric, mode, colours, constraint) -> tuple[list[ReportPlot], list[tuple[str, str]]]:
    plots, skipped = [], []
    better = "higher" if mode == "max" else "lower"
    for cost in PARETO_COSTS:
        name = f"pareto_{cost}"
        if not _present(df, metric, cost):
            skipped.append((name, f"no feasible trial has both '{metric}' and '{cost}' values"))
            continue
        limit = constraint.get("limit") if constraint.get("metric") == cost else None
        caption = (
            f"Feasible trials of all seeds (faint) and each searcher's Pareto front over all its seeds "
            f"({label(metric)}: {better} is better, {label(cost)}: lower is better)."
        )
        fig = pareto_figure(df, metric, mode, cost, colours, limit=limit)
        plots.append(ReportPlot(name, f"{label(metric)} vs {label(cost)}", caption, to_png(fig)))
    return plots, skipped


def regret_tables(df: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``raynas compare`` as two tables: regret per (searcher, budget) with its 95% bootstrap interval over
    seeds, and per (budget, pair) whether the two searchers are distinguishable."""
    result = compare(df, dict(settings))
    regret = pd.DataFrame([{"searcher": name, "budget": int(k), **stats}
                           for name, per in result["searchers"].items() for k, stats in per.items()])
    pairs = pd.DataFrame([{"budget": int(k), **pair} for k, per in result["pairs"].items() for pair in per])
    return regret, pairs


def _curve_plots(curves: pd.DataFrame, metric: str, optimum, optimum_source: str, colours) -> list[ReportPlot]:
    title = f"Best {label(metric)} so far"
    caption = (
        "Mean over seeds of the best feasible value found after n feasible evaluations; the band spans "
        "the 25th to 75th percentile over seeds; each curve ends where its shortest seed ends."
    )
    fig = curves_figure(summarise_curves(curves), label(metric), colours, title, optimum)
    plots = [ReportPlot("best_so_far", title, caption, to_png(fig))]
    if optimum is not None:
        fig = curves_figure(summarise_curves(curves, "regret"), "regret", colours, f"Regret (optimum {optimum:g})")
        caption = (
            f"Mean over seeds of the distance from the optimum {optimum:g} ({optimum_source}) "
            "after n feasible evaluations, with the interquartile band."
        )
        plots.append(ReportPlot("regret", "Regret", caption, to_png(fig)))
        if "wall_time_s" in curves:
            fig = time_curves_figure(curves, colours, "Regret over wall-clock time")
            caption = ("Mean over seeds of the regret each run had reached by then, against seconds since the "
                       "sweep started (all runs share the cluster); each curve starts when every seed has a result.")
            plots.append(ReportPlot("regret_time", "Regret over wall-clock time", caption, to_png(fig)))
    return plots


def _hypervolumes(df, metric, mode, cost, colours, given) -> tuple[pd.DataFrame, ReportPlot, str]:
    objectives = [(metric, mode), (cost, "min")]
    reference, source = reference_point(df, objectives, given)
    scale = ideal_scale(df, objectives, reference)
    hypervolumes = hypervolume_table(df, objectives, reference, scale)
    title = f"Hypervolume: {label(metric)} vs {label(cost)}"
    caption = "Hypervolume per searcher: mean over seeds ± standard deviation, one dot per seed."
    plot = ReportPlot("hypervolume", title, caption, to_png(hypervolume_figure(hypervolumes, colours, title)))
    note = (
        f"Hypervolume of {label(metric)} vs {label(cost)} per seed, from the reference point {source}, divided by "
        f"the area between that point and the best values any run reached ({scale:.6g}): every run with a feasible "
        f"architecture better than the reference in both counts, and 1 would be one architecture best in both."
    )
    return hypervolumes, plot, note


EPOCH_COLUMNS = {"entropy": "total architecture entropy per epoch, one line per search run (trial)",
                 "miou": "the discrete architecture a run holds after each epoch, scored with its weights",
                 "flops": "FLOPs of the architecture a run holds after each epoch (a shrinking run's path)"}


def _epoch_plots(epochs: pd.DataFrame, metric: str, colours) -> list[ReportPlot]:
    """Per-epoch curves of the searches that train: entropy, the held architecture's metric and its FLOPs."""
    labels = dict(zip(epochs["trial_id"], epochs["searcher"].astype(str)))
    plots = []
    for column in dict.fromkeys(("entropy", metric, "flops")):
        if column in epochs and epochs[column].notna().any():
            caption = EPOCH_COLUMNS.get(column, f"{column} per epoch, one line per trial")
            fig = epochs_figure(epochs, column, labels, colours, f"{label(column)} per epoch")
            plots.append(ReportPlot(f"epochs_{column}", f"{column} per epoch", caption, to_png(fig)))
    return plots


def latency_note(df: pd.DataFrame) -> str:
    """Where the reported latencies were measured: on nodes with the latency resource, or locally."""
    if "latency_remote" not in df.columns:
        return ""
    measured = df.dropna(subset=["latency_remote"])
    remote = int(measured["latency_remote"].astype(bool).sum())
    devices = ", ".join(sorted(measured["latency_device"].astype(str).unique())) if "latency_device" in df else "?"
    note = (f"Latency: ONNX Runtime, {remote} of {len(measured)} trials measured on nodes carrying the latency "
            f"resource, {len(measured) - remote} measured locally; devices: {devices}.")
    if remote == 0:
        note += " No node carried the latency resource, so these are this machine's latencies, not the target's."
    return note


def analyse(df: pd.DataFrame, settings: Mapping[str, Any], top_k: int = 10, models: list[dict] | None = None,
            noise: dict | None = None, epochs: pd.DataFrame | None = None,
            rank_check: dict | None = None) -> SweepAnalysis:
    """Compute the tables and draw the plots of the report; plots that cannot be drawn are listed with why.

    ``models``: the fine-tuned winners, shown first; ``noise``: a ``score_noise`` result, stated beside
    the spread of the metric between the sweep's sub-networks and between the searchers' bests; ``epochs``:
    the per-epoch reports of a sweep whose trials train (``analysis.results.load_epochs``), drawn per trial;
    ``rank_check``: ``raynas rank-check``'s result (``SweepFolder.rank_check_file``)."""
    if df.empty:
        raise UserError("the sweep has no trials")
    metric, mode = objective(df, settings)
    optimum, optimum_source = _optimum(df, {**settings, "metric": metric, "mode": mode})
    colours = searcher_colours(df["searcher"].astype(str).unique())
    plots, skipped = _pareto_plots(df, metric, mode, colours, settings.get("constraint") or {})

    curves = best_so_far(df, metric, mode, optimum=optimum)
    if curves.empty:
        skipped.append(("best_so_far", f"no feasible trial has a '{metric}' value"))
    else:
        plots += _curve_plots(curves, metric, optimum, optimum_source, colours)
    if optimum is None or curves.empty:
        skipped.append(("regret", optimum_source if optimum is None else "no feasible trial"))
    regret, pairs = (regret_tables(df, {**settings, "metric": metric, "mode": mode})
                     if {"budget", "searchers", "constraint"} <= set(settings) and not curves.empty
                     else (pd.DataFrame(), pd.DataFrame()))

    hypervolumes = None
    hypervolume_note = ""
    cost = next((c for c in HYPERVOLUME_COSTS if _present(df, metric, c)), None)
    if cost is None:
        skipped.append(("hypervolume", f"no feasible trial has '{metric}' and one of {list(HYPERVOLUME_COSTS)}"))
    else:
        hypervolumes, plot, hypervolume_note = _hypervolumes(df, metric, mode, cost, colours,
                                                             settings.get("hv_reference"))
        plots.append(plot)
    if epochs is not None and not epochs.empty:
        plots += _epoch_plots(epochs, metric, colours)
    if rank_check is not None:
        caption = ("Each sub-network of the rank check: the score the sweep ranked it by against its score after "
                   "fine-tuning with one recipe; a ranking that holds rises from left to right.")
        plots.append(ReportPlot("rank_check", "Inherited against fine-tuned score", caption,
                                to_png(rank_check_figure(rank_check))))
    evaluated = feasible_rows(df, [metric])
    bests = evaluated.groupby(evaluated["searcher"].astype(str))[metric]
    model_plots = [plot for model in models or [] for plot in _model_plots(model)]

    return SweepAnalysis(
        metric=metric,
        mode=mode,
        optimum=optimum,
        ranking=ranking_table(df, metric, mode, hypervolumes=hypervolumes, optimum=optimum),
        proposals=proposal_counts(df),
        best_architectures=best_architectures(df, metric, mode, top_k),
        hypervolume_note=hypervolume_note,
        regret=regret,
        pairs=pairs,
        latency_note=latency_note(df),
        models=list(models or []),
        noise=noise,
        spread=float(evaluated[metric].std()) if len(evaluated) > 1 else None,
        searcher_bests=(bests.max() if mode == "max" else bests.min()).to_dict(),
        rank_check=rank_check,
        plots=plots,
        model_plots=model_plots,
        skipped=skipped,
    )


def _model_plots(model: Mapping[str, Any]) -> list[ReportPlot]:
    """A fine-tuned model's strip of test images (image, ground truth, prediction; written by ``finetune``) and
    its per-class IoU on val and test."""
    arch_id, plots = model["arch_id"], []
    examples = Path(model["files"].get("examples") or "")
    if examples.is_file():
        plots.append(ReportPlot(f"examples_{arch_id}", f"What {arch_id} sees",
                                "Images of the test split spread over it (the val split where there is no test "
                                "split), at the trained size: the image, its ground truth, the shipped model's "
                                "prediction (ONNX Runtime). Colours as in legend.png of `raynas predict`.",
                                examples.read_bytes()))
    scores = {split: model[key] for split, key in (("val", "per_class_iou"), ("test", "test_per_class_iou"))
              if model.get(key)}
    if scores:
        plots.append(ReportPlot(f"per_class_{arch_id}", f"Per-class IoU of {arch_id}",
                                "IoU of every class on the val and test splits (a class absent from a split has "
                                "no bar).", to_png(per_class_figure(scores, f"Per-class IoU of {arch_id}"))))
    return plots


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0 1em 1.5em 0; max-width: 46em; vertical-align: top; }
figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, na_rep="–", float_format=lambda x: f"{x:.4g}")


def _settings_table(settings: Mapping[str, Any]) -> str:
    text = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in settings.items()}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(v)}</td></tr>" for k, v in text.items())
    return f"<table>{rows}</table>"


def _figure_html(plot: ReportPlot, plots_href: str) -> str:
    """A plot embedded in the page, linking to its PNG ``{plots_href}/{name}.png``."""
    e = html.escape
    return (f'<figure id="plot-{e(plot.name)}"><a href="{e(plots_href)}/{e(plot.name)}.png">'
            f'<img src="data:image/png;base64,{base64.b64encode(plot.png).decode("ascii")}" alt="{e(plot.title)}"></a>'
            f"<figcaption>{e(plot.caption)}</figcaption></figure>")


def render_html(analysis: SweepAnalysis, settings: Mapping[str, Any], plots_href: str, source: str) -> str:
    """The report page; plot ``name`` links to ``{plots_href}/{name}.png``."""
    e = html.escape
    figures = "".join(_figure_html(p, plots_href) for p in analysis.plots)
    skipped = "".join(f"<li><code>{e(name)}</code>: {e(why)}</li>" for name, why in analysis.skipped)
    direction = "higher" if analysis.mode == "max" else "lower"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>raynas sweep report: {e(source)}</title><style>{STYLE}</style></head><body>
<h1>raynas sweep report</h1>
{_models_section(analysis, plots_href)}
<p>Sweep <code>{e(source)}</code>, report written {generated}. Objective: <b>{e(analysis.metric)}</b>
({direction} is better); budgets count feasible evaluations.</p>
{f"<p>{e(analysis.latency_note)}</p>" if analysis.latency_note else ""}
{_noise_section(analysis)}
{_rank_check_section(analysis, settings)}
<h2>Ranking</h2>
<p>Per seed, searchers are ranked by their best feasible {e(analysis.metric)} (1 = best, ties share the
average rank, a run without a feasible trial ranks last); <code>mean_rank</code> averages over seeds.
{e(analysis.hypervolume_note)}</p>
{_table(analysis.ranking)}
{_regret_section(analysis)}
<h2>Plots</h2>
{figures}
{f"<h3>Plots not drawn</h3><ul>{skipped}</ul>" if skipped else ""}
<h2>Best architectures found</h2>
{_table(analysis.best_architectures)}
<h2>Proposals per searcher</h2>
<p>All seeds together. Infeasible proposals broke the constraint; repeats named an architecture the run had evaluated already and were answered from that result. Neither was evaluated, and neither counts towards the budget.</p>
{_table(analysis.proposals)}
<h2>Settings</h2>
{_settings_table(settings)}
</body></html>
"""


def _models_section(analysis: SweepAnalysis, plots_href: str) -> str:
    """The first screen: the fine-tuned model(s) a user ships, what they see and their per-class IoU."""
    if not analysis.models:
        return ""
    e = html.escape

    def latency(measured: Mapping[str, Any] | None, what: str) -> str:
        if measured is None:
            return ""
        where = f"{e(measured['latency_device'])}{', measured locally' if not measured['latency_remote'] else ''}"
        return (f"{measured['latency_ms']:.2f} ms at {'×'.join(map(str, measured['resolution']))} "
                f"({what}; {where})<br>")

    def score(value: float | None, torch_value: float | None, bold: bool = False) -> str:
        if value is None:
            return "–"
        text = f"<b>{value:.4f}</b>" if bold else f"{value:.4f}"
        return text + (f"<br><small>PyTorch {torch_value:.4f}</small>" if torch_value is not None else "")

    rows = []
    for m in analysis.models:
        inherited = "–" if m["inherited_miou"] is None else f"{m['inherited_miou']:.4f}"
        rows.append(
            f"<tr><td><code>{e(m['arch_id'])}</code></td>"
            f"<td>{score(m.get('test_miou'), m.get('test_miou_torch'), bold=True)}</td>"
            f"<td>{score(m['val_miou'], m.get('val_miou_torch'))}</td><td>{inherited}</td>"
            f"<td>{latency(m['latency'], 'deployment size')}"
            f"{latency(m.get('latency_trained_size'), 'trained size')}</td>"
            f"<td>{m['flops'] / 1e9:.3f} G at {m['resolution']}</td><td>{m['params'] / 1e6:.3f} M</td>"
            f"<td>{m['epochs']} epochs{', from scratch' if m['from_scratch'] else ''}</td>"
            f"<td><code>{e(m['files']['onnx'])}</code><br><code>{e(m['files']['weights'])}</code></td></tr>")
    scored = next((m["scored_by"] for m in analysis.models if m.get("scored_by")), None)
    figures = "".join(_figure_html(p, plots_href) for p in analysis.model_plots)
    return f"""<h2>The model to ship</h2>
<p>Fine-tuned with Ray Train from the sweep's best sub-network(s). The validation split chose the architecture
(and the recipe, when searched), so its val mIoU is optimistic; test mIoU is measured once, at the end, on the
whole labelled test split, which nothing was chosen on: the number to quote (– where the data set publishes no
test labels). {f"Scored by {e(scored)}, PyTorch's figure below it." if scored else ""} The inherited-weight mIoU
is the val score it started from; latency measured by the latency service.</p>
<table><tr><th>arch_id</th><th>test mIoU</th><th>val mIoU</th><th>inherited mIoU</th><th>latency</th><th>FLOPs (MACs)</th>
<th>params</th><th>training</th><th>files</th></tr>{"".join(rows)}</table>
{figures}"""


def _noise_section(analysis: SweepAnalysis) -> str:
    noise = analysis.noise
    if not noise:
        return ""
    spread = f"{analysis.spread:.4f}" if analysis.spread is not None else "–"
    text = (f"<p><b>How far to trust a score.</b> One architecture's inherited-weight {html.escape(analysis.metric)} "
            f"moved with the images that score it by std {noise['std']:.4f} over {noise['draws']} draws of "
            f"{noise['calibration_images']} calibration images and {noise['val_images'] or 'all'} validation images "
            f"(mean {noise['mean']:.4f}); between the sweep's sub-networks it spreads with std {spread}. "
            f"Differences smaller than about {2 * noise['std']:.4f} are within that noise.")
    bests = analysis.searcher_bests
    if len(bests) > 1:
        ordered = sorted(bests.items(), key=lambda kv: kv[1], reverse=analysis.mode == "max")
        listed = ", ".join(f"{name}: {value:.4f}" for name, value in ordered)
        margin, best = 2 * noise["std"], ordered[0][1]
        tied = [name for name, value in ordered if abs(value - best) <= margin]
        behind = [name for name, value in ordered if abs(value - best) > margin]
        if not behind:
            verdict = ("all within twice the score noise of the best: this sweep <b>cannot tell its searchers "
                       "apart</b> by their best scores")
        elif len(tied) == 1:
            verdict = f"the best, {tied[0]}, is ahead of every other by more than twice the score noise"
        else:
            verdict = (f"within twice the score noise of the best: {', '.join(tied)} (this sweep cannot tell "
                       f"these apart); behind by more than that: {', '.join(behind)}")
        text += (f" The searchers' bests ({html.escape(listed)}) span {abs(ordered[-1][1] - best):.4f}; {verdict} "
                 f"(whether one searcher beats another over seeds is the regret section's paired test).")
    return text + "</p>"


def _rank_check_section(analysis: SweepAnalysis, settings: Mapping[str, Any]) -> str:
    """How far a supernet sweep's ranking holds: the rank check's correlations, or how to measure them."""
    check = analysis.rank_check
    if settings.get("benchmark") != "supernet":
        return ""
    if check is None:
        return ("<h2>How far the ranking holds</h2><p>Not measured for this sweep: <code>python -m raynas rank-check "
                "SWEEP_DIR</code> fine-tunes sub-networks with one recipe and says how well the inherited scores "
                "rank them.</p>")
    e = html.escape

    def value(x: float) -> str:  # no coefficient where the scores do not vary
        return "–" if math.isnan(x) else f"{x:.3f}"

    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{c['n']}</td><td><b>{value(c['kendall_tau'])}</b></td>"
        f"<td>[{value(c['ci_low'])}, {value(c['ci_high'])}]</td><td>{value(c['spearman'])}</td>"
        f"<td>[{value(c['spearman_ci_low'])}, {value(c['spearman_ci_high'])}]</td></tr>"
        for name, c in ((name, check[name]) for name in ("spread", "top_k")))
    recipe = check["recipe"]
    init = (check.get("init") or {}).get("source", "?")
    data = f", data changed by {e(json.dumps(check['data']))}" if check.get("data") else ""
    return f"""<h2>How far the ranking holds</h2>
<p>Sub-networks of this sweep fine-tuned with one recipe ({recipe['epochs']} epochs × {recipe['steps_per_epoch']}
steps of {recipe['batch_size']} images, lr {recipe['lr']:g}{data}) and scored on every validation image; Kendall's τ and
Spearman's ρ between the {e(check['metric'])} the sweep ranked them by and the fine-tuned one, with 95% bootstrap
intervals over the sub-networks. <code>spread</code>: sub-networks spread over the sweep's FLOPs range;
<code>top_k</code>: its best feasible ones, the choice the search makes under its constraint. The supernet's
weights started from {e(init)}.</p>
<table><tr><th>set</th><th>n</th><th>Kendall τ</th><th>95% interval</th><th>Spearman ρ</th><th>95% interval</th></tr>
{rows}</table>"""


def _regret_section(analysis: SweepAnalysis) -> str:
    if analysis.regret.empty:
        return ""
    distinguishable = analysis.pairs[analysis.pairs["distinguishable"]] if not analysis.pairs.empty else analysis.pairs
    return f"""<h2>Regret with 95% intervals</h2>
<p>Mean regret after N feasible evaluations over seeds, with its 95% bootstrap interval (<code>ci_low</code>,
<code>ci_high</code>; none from one seed); the hit rate is the share of seeds that found the optimum. Two
searchers are <em>distinguishable</em> at a budget when the paired sign-flip test of their difference per seed
gives <code>p_value</code> &lt; 0.05, which takes at least {MIN_SEEDS} seeds
({len(distinguishable)} of {len(analysis.pairs)} pairs and budgets are).</p>
{_table(analysis.regret)}
{_table(analysis.pairs) if not analysis.pairs.empty else ""}"""


def plots_dir_for(out: Path) -> Path:
    """Where the PNGs of the report ``out`` go: ``<stem>_plots/`` beside it."""
    return out.with_name(f"{out.stem}_plots")


def write_report(
    df: pd.DataFrame, settings: Mapping[str, Any], out: str | Path, top_k: int = 10, source: str = "",
    models: list[dict] | None = None, noise: dict | None = None, epochs: pd.DataFrame | None = None,
    rank_check: dict | None = None,
) -> Path:
    """Write the HTML report to ``out`` and its PNGs to ``<stem>_plots/``; return ``out``.

    ``models`` (fine-tuned winners) and ``noise`` (a score's noise) are shown first when given; ``epochs``
    (per-epoch reports of trials that train) adds their curves; ``rank_check`` how far the ranking holds."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give the path of the HTML file to write")
    plots_dir = plots_dir_for(out)
    if plots_dir.exists() and (not plots_dir.is_dir() or any(p.suffix != ".png" for p in plots_dir.iterdir())):
        raise UserError(f"{plots_dir}: exists and is not a folder of report plots; choose another --out")
    analysis = analyse(df, settings, top_k, models, noise, epochs, rank_check)
    page = render_html(analysis, settings, plots_dir.name, source or str(out.parent))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        (staging / "plots").mkdir()
        for plot in analysis.plots + analysis.model_plots:
            (staging / "plots" / f"{plot.name}.png").write_bytes(plot.png)
        (staging / "report.html").write_text(page, encoding="utf-8")
        if plots_dir.exists():
            plots_dir.rename(staging / "old_plots")
        (staging / "plots").rename(plots_dir)
        os.replace(staging / "report.html", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
