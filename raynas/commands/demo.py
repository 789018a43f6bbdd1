"""``python -m raynas demo``: the main job, end to end.

1. train a small weight-sharing supernet with Ray Train (CamVid when its
   folder exists, else the generated set — said loudly);
2. sweep CDS, regularized evolution, Optuna, Nevergrad and random search
   over it as Ray Tune trials, each sub-network scored by mIoU with inherited
   weights and its latency measured by the latency actors (on nodes with the
   ``arm`` resource, else locally, as the results say);
3. write the report.

Running it again on the same ``--out`` continues what is there: a finished
step is skipped, an interrupted one resumes (nothing is evaluated twice).
``--address auto`` (on a cluster's head node, e.g. after ``ray up cluster.yaml``)
runs the same job at scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Mapping

NAME = "demo"
HELP = "the main job: train a supernet, sweep five searchers over it with measured latency, write the report"
SECTIONS = ("supernet", "sweep", "report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/demo.yaml", help="demo YAML (default configs/demo.yaml)")
    parser.add_argument("--out", default="runs/demo", help="where the supernet, sweep and report go")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: RAY_ADDRESS, else a running cluster, else a local Ray)")
    parser.add_argument("--data-root", dest="data_root", default=None,
                        help="the data set's folder (default: the config's, else ../shared/data/<dataset>)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's, Train's and Tune's own log output")


def read_demo_config(path: str | Path) -> dict[str, Any]:
    """The ``supernet`` (train-supernet schema), ``sweep`` (SweepConfig fields) and ``report`` sections."""
    from raynas.settings import read_sections

    data = read_sections(path, SECTIONS)
    return {name: dict(data.get(name) or {}) for name in SECTIONS}


def choose_data(data: dict[str, Any], root: str | None, log) -> dict[str, Any]:
    """The data set's folder (given, or the shared default) or, when the default is missing, the generated set."""
    from raynas.errors import UserError
    from raynas.paths import shared_data_dir

    data = dict(data)
    if data.get("dataset", "synthetic") == "synthetic":
        log("demo: WARNING: training on the procedurally generated set (data.dataset: synthetic)")
        return data
    given = root or data.get("root")
    folder = Path(given or shared_data_dir() / data["dataset"]).expanduser()
    if folder.is_dir():
        data["root"] = str(folder.resolve())
        return data
    if given:
        raise UserError(f"data root: {folder} is not a folder (expected the {data['dataset']} data set there)")
    log(f"demo: WARNING: no {data['dataset']} data at {folder}; training on the procedurally generated "
        f"set instead (pass --data-root to use real data)")
    return {"dataset": "synthetic", "crop_size": data.get("crop_size", 64)}


def train(config: dict[str, Any], out: Path, log) -> Path:
    """Train (or finish training) the supernet; returns its last checkpoint."""
    from raynas.progress import Progress
    from raynas.training_config import SupernetTrainingConfig
    from trainables.checkpoints import latest_checkpoint, read_meta
    from trainables.supernet_training import train_supernet

    cfg = SupernetTrainingConfig.load({**config, "run": {"storage_path": str(out), "name": "supernet"}})
    run_dir = out / "supernet"
    done = latest_checkpoint(run_dir)
    if done is not None and read_meta(done)["epoch"] >= cfg.training.epochs:
        log(f"demo: 1/3 supernet already trained ({done})")
        return done
    log(f"demo: 1/3 training the supernet on Ray Train: {cfg.scaling.num_workers} worker(s), "
        f"{cfg.training.epochs} epochs of {cfg.training.steps_per_epoch} sandwich steps, data {cfg.data.dataset}")
    started = time.time()
    result = train_supernet(cfg, progress=Progress(prefix="demo: 1/3 "))
    if result.error is not None:
        raise RuntimeError(f"supernet training failed: {result.error}")
    history = read_meta(latest_checkpoint(run_dir))["history"]
    last = history[-1] if history else {}
    log(f"demo: 1/3 supernet trained in {time.time() - started:.0f} s; last epoch: "
        + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if isinstance(v, float)))
    return latest_checkpoint(run_dir)


def run(args: argparse.Namespace) -> int:
    from analysis.report import write_report
    from analysis.results import load_results
    from raynas.cluster import connect
    from raynas.config import SweepConfig
    from raynas.progress import Progress, quiet_ray_logs
    from raynas.sweep import run_sweep
    from raynas.sweep_folder import SweepFolder
    from raynas.training_config import SupernetTrainingConfig

    log = print
    sections = read_demo_config(args.config)
    out = Path(args.out).expanduser().resolve()
    supernet = dict(sections["supernet"])
    supernet["data"] = choose_data(supernet.get("data", {}), args.data_root, log)
    sweep_dir = out / "sweep"
    # validate everything before starting anything
    fields = {**sections["sweep"], "benchmark": "supernet", "supernet": str(out / "supernet"), "out": str(sweep_dir)}
    if isinstance(fields.get("latency"), Mapping):  # the demo keeps its latency cache beside its results
        fields["latency"] = {"cache_dir": str(out / "latency_cache"), **fields["latency"]}
    SupernetTrainingConfig.load({**supernet, "run": {"storage_path": str(out), "name": "supernet"}})
    sweep = SweepConfig.load(fields)
    started = time.time()
    connect(args.address, args.verbose)
    out.mkdir(parents=True, exist_ok=True)
    quiet_ray_logs(str(out / "raynas.log"), args.verbose)
    checkpoint = train(supernet, out, log)
    sweep = sweep.updated({"supernet": str(checkpoint)})
    resume = SweepFolder(sweep_dir).exists()
    log(f"demo: 2/3 {'continuing' if resume else 'running'} the sweep: {', '.join(sweep.searchers)}; "
        f"{sweep.budget} feasible sub-networks each, {sweep.seeds} seed(s)")
    trials = run_sweep(sweep, resume=resume, verbose=args.verbose, progress=Progress(prefix="demo: 2/3 "))
    df, settings = load_results(trials)
    report = write_report(df, settings, out / "report.html", top_k=int(sections["report"].get("top_k", 10)),
                          source=str(trials))
    log(f"demo: 3/3 report: {report}")
    log(f"demo: done in {time.time() - started:.0f} s; trials table {trials}")
    return 0
