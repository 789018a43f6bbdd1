"""A sweep folder → one tidy DataFrame → Parquet.

One row per proposal, columns (in this order, those absent skipped):
``searcher`` (str), ``seed`` (int), ``order`` (int, 1-based completion order
within (searcher, seed)), ``trial_id`` (the Tune trial; empty for a proposal
answered without one), ``arch_id``, ``config/<dimension>`` for every
architecture dimension, the metrics ``accuracy`` / ``miou``, ``latency_ms``,
``flops``, ``params``, details where reported (``DETAIL_COLUMNS``), then
``feasible`` (bool: broke no constraint), ``repeat`` (bool: an architecture the
run had evaluated already, answered from that result) and ``wall_time_s``
(seconds from the start of the sweep). Budgets count the rows that are
feasible and not repeats.

The rows come from the sweep's journal (every finished evaluation, as Tune
reported it) and its searcher's saved state (which evaluations belong to the
runs, and the proposals answered without a trial): reading 10^4 trial folders
through ``ExperimentAnalysis`` takes minutes, the journal seconds. The same
trials are Tune's own (``Tuner.restore(OUT/tune)``, ``ResultGrid.get_dataframe()``).
The Parquet file carries the sweep settings as JSON in its schema metadata
under the key ``b"raynas"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raynas.errors import UserError
from raynas.sweep_folder import SweepFolder
from raynas.sweep_search import SweepSearcher

METRIC_COLUMNS = ("accuracy", "miou", "latency_ms", "flops", "params")
# kept as reported where present: how latency was measured or predicted, the evaluation time and device
DETAIL_COLUMNS = ("latency_pred_ms", "latency_p90_ms", "latency_cpu_ms", "latency_remote", "latency_device",
                  "latency_node_id", "eval_s", "device",
                  # searches that train: the architecture a run found, its gap, the run's last epoch
                  "found_arch_id", "found_arch", "discretization_gap", "entropy", "epoch")
METADATA_KEY = b"raynas"


def tidy(rows: list[dict], dimensions: list[str], started: float) -> pd.DataFrame:
    """Tidy rows from proposals ``{searcher, seed, trial_id, arch_id, arch, metrics…, feasible, repeat,
    finished_at}``; ``order`` and ``wall_time_s`` from ``finished_at``."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).sort_values(["searcher", "seed", "finished_at"], kind="stable")
    columns = {
        "searcher": frame["searcher"].astype(str),
        "seed": frame["seed"].astype(int),
        "order": frame.groupby(["searcher", "seed"]).cumcount() + 1,
        "trial_id": frame["trial_id"].fillna("").astype(str),
        "arch_id": frame["arch_id"].astype(str),
    }
    for dim in dimensions:
        columns[f"config/{dim}"] = pd.Series([arch[dim] for arch in frame["arch"]], index=frame.index)
    for column in METRIC_COLUMNS:
        if column in frame:
            columns[column] = frame[column].astype(float)
    for column in DETAIL_COLUMNS:
        if column in frame:
            columns[column] = frame[column]
    columns["feasible"] = frame["feasible"].astype(bool)
    columns["repeat"] = frame["repeat"].astype(bool)
    columns["wall_time_s"] = (frame["finished_at"] - started).astype(float)
    tidy = pd.DataFrame(columns)  # one frame at once: a space with hundreds of dimensions stays unfragmented
    return tidy.reset_index(drop=True)


def load_sweep(out: str | Path) -> pd.DataFrame:
    """Every proposal of the sweep in ``out`` (finished or not), tidy."""
    folder = SweepFolder(out)
    settings = folder.read_settings()
    state = SweepSearcher.saved_state(folder.experiment)
    evaluated = {(r.name, r.seed): r.evaluated for r in state.records}
    latest: dict[tuple, dict] = {}
    for entry in folder.journal():  # an architecture evaluated again after a kill: the run's last result
        run = (entry["searcher"], entry["seed"])
        if entry["arch_id"] in evaluated.get(run, {}):
            latest[run + (entry["arch_id"],)] = {**entry["metrics"], **{k: entry[k] for k in (
                "searcher", "seed", "trial_id", "arch_id", "arch", "finished_at")}, "feasible": True, "repeat": False}
    rows = list(latest.values()) + [{**row, "trial_id": ""} for row in state.answered_rows()]
    if not rows:
        raise UserError(f"sweep directory {out}: no finished trials yet")
    return tidy(rows, settings["dimensions"], state.started)


def load_epochs(out: str | Path) -> pd.DataFrame:
    """Every epoch's report of a sweep whose trials train (``OUT/epochs.jsonl``): one row per trial and
    epoch with ``searcher``, ``seed``, ``trial_id`` and what the trial reported (``epoch``, ``entropy`` …);
    empty for other sweeps. A trial resumed from a checkpoint keeps its last report of each epoch."""
    rows = [{"searcher": e["searcher"], "seed": e["seed"], "trial_id": e["trial_id"], **e["metrics"]}
            for e in SweepFolder(out).epochs()]
    if not rows:
        return pd.DataFrame(columns=["searcher", "seed", "trial_id", "epoch"])
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(["trial_id", "epoch"], keep="last").reset_index(drop=True)


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

    A sweep directory without ``trials.parquet`` (interrupted) is read from its journal and saved state.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        folder = SweepFolder(path)
        if not folder.trials_file.is_file() and folder.exists():
            return load_sweep(path), folder.read_settings()  # an unfinished sweep
        path = folder.trials_file
    if not path.is_file():
        raise UserError(f"{path} does not exist (run `python -m raynas sweep` first)")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise UserError(f"{path} has no raynas settings in its Parquet metadata (not written by a raynas sweep)")
    return table.to_pandas(), json.loads(raw)
