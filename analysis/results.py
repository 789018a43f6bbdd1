"""A sweep directory → one tidy DataFrame (through Ray Tune's own results) → Parquet.

One row per trial, columns (in this order, those absent skipped):
``searcher`` (str), ``seed`` (int), ``order`` (int, 1-based completion order
within (searcher, seed)), ``trial_id``, ``arch_id``, ``config/<dimension>``
for every architecture dimension, the metrics ``accuracy`` / ``miou``,
``latency_ms``, ``flops``, ``params``, details where reported (``DETAIL_COLUMNS``:
how latency was measured or predicted), then ``feasible`` (bool) and
``wall_time_s`` (seconds from the start of that run to the trial's result).
The Parquet file carries the sweep settings as JSON in its schema metadata
under the key ``b"raynas"``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from raynas.errors import UserError

METRIC_COLUMNS = ("accuracy", "miou", "latency_ms", "flops", "params")
# kept as reported where present: how latency was measured or predicted, and the evaluation time
DETAIL_COLUMNS = ("latency_pred_ms", "latency_p90_ms", "latency_cpu_ms", "latency_remote", "latency_device",
                  "latency_node_id", "eval_s")
METADATA_KEY = b"raynas"


def tidy_run(frame: pd.DataFrame, dimensions: list[str]) -> pd.DataFrame:
    """Tidy rows of one Tune experiment (``ResultGrid.get_dataframe()`` / ``ExperimentAnalysis.dataframe()``)."""
    if frame.empty:
        return pd.DataFrame()
    frame = frame.copy()
    # Completion order: Tune's result timestamp (s), ties broken by proposal order (trial counter).
    frame["_proposal"] = [_proposal_number(t, d) for t, d in zip(frame["trial_id"], frame["logdir"])]
    frame = frame.sort_values(["timestamp", "_proposal"], kind="stable").reset_index(drop=True)
    started = (frame["timestamp"] - frame["time_total_s"]).min()
    tidy = pd.DataFrame({
        "searcher": frame["config/searcher"].astype(str),
        "seed": frame["config/seed"].astype(int),
        "order": range(1, len(frame) + 1),
        "trial_id": frame["trial_id"].astype(str),
        "arch_id": frame["arch_id"].astype(str),
    })
    for dim in dimensions:
        tidy[f"config/{dim}"] = frame[f"config/{dim}"].to_numpy()
    for metric in METRIC_COLUMNS:
        if metric in frame:
            tidy[metric] = frame[metric].astype(float).to_numpy()
    for column in DETAIL_COLUMNS:
        if column in frame:
            tidy[column] = frame[column].to_numpy()
    tidy["feasible"] = frame["feasible"].astype(bool).to_numpy()
    tidy["wall_time_s"] = (frame["timestamp"] - started).astype(float).to_numpy()
    return tidy


def _proposal_number(trial_id: str, logdir: str) -> int:
    """Tune names a trial's directory ``<trainable>_<trial_id>_<proposal number>_…``."""
    match = re.search(rf"{re.escape(trial_id)}_(\d+)", str(logdir))
    return int(match.group(1)) if match else 0


def load_sweep(out: str | Path) -> pd.DataFrame:
    """Every trial of the sweep in ``out`` (read with Tune's ``ExperimentAnalysis``), tidy."""
    from ray.tune import ExperimentAnalysis

    from raynas.sweep import load_settings, run_dir

    settings = load_settings(out)
    parts = []
    for searcher in settings["searchers"]:
        for seed in settings["seeds"]:
            path = run_dir(Path(out), searcher, seed)
            if not path.is_dir():
                continue
            analysis = ExperimentAnalysis(str(path))
            frame = analysis.dataframe()
            if not frame.empty:  # the trial folders carry the proposal numbers that order same-second results
                frame["logdir"] = frame["trial_id"].map({t.trial_id: Path(t.path).name for t in analysis.trials})
            parts.append(tidy_run(frame, settings["dimensions"]))
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise UserError(f"sweep directory {out}: no finished trials yet")
    return pd.concat(parts, ignore_index=True)


def write_trials(df: pd.DataFrame, path: str | Path, settings: dict) -> Path:
    """Write the tidy table as Parquet with ``settings`` as JSON under metadata key ``b"raynas"``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(settings).encode()
    path = Path(path)
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def load_results(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The tidy table and the sweep settings of a ``trials.parquet`` or a sweep directory.

    A sweep directory without ``trials.parquet`` (interrupted) is read from Tune's experiments.
    """
    import pyarrow.parquet as pq

    from raynas.sweep import TRIALS_FILE, load_settings

    path = Path(path)
    if path.is_dir() and not (path / TRIALS_FILE).is_file() and (path / "sweep.json").is_file():
        return load_sweep(path), load_settings(path)  # an unfinished sweep: read Tune's experiments
    if path.is_dir():
        path = path / TRIALS_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist (run `python -m raynas sweep` first)")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise UserError(f"{path} has no raynas settings in its Parquet metadata (not written by a raynas sweep)")
    return table.to_pandas(), json.loads(raw)
