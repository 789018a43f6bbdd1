"""``python -m raynas demo``: the main job, end to end.

1. train a small weight-sharing supernet with Ray Train (CamVid when its
   folder exists, else the generated set — said loudly);
2. sweep CDS, regularized evolution, Optuna, Nevergrad and random search
   over it, all at once as one Ray Tune experiment, each sub-network scored
   by mIoU with inherited weights and its latency measured by the latency
   actors (on nodes with the ``arm`` resource, else locally, as the results
   say); then measure how much one sub-network's score moves with the images
   that score it;
3. fine-tune the best sub-network with Ray Train, export it to ONNX and
   measure it: the model a user ships;
4. write the report, the final model on its first screen.

Running it again on the same ``--out`` continues what is there: a finished
step is skipped, an interrupted one resumes (nothing is evaluated twice).
``--address auto`` (on a cluster's head node, e.g. after ``ray up cluster.yaml``)
runs the same job at scale.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Mapping

from raynas.cluster import add_cluster_arguments

NAME = "demo"
HELP = ("the main job: train a supernet, sweep five searchers over it with measured latency, fine-tune and export "
        "the winner, write the report")
SECTIONS = ("supernet", "sweep", "finetune", "report")
STEPS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/demo.yaml", help="demo YAML (default configs/demo.yaml)")
    parser.add_argument("--out", default="runs/demo", help="where the supernet, sweep, model and report go")
    parser.add_argument("--data-root", dest="data_root", default=None,
                        help="the data set's folder (default: the config's, else ../shared/data/<dataset>)")
    add_cluster_arguments(parser, "Ray's, Train's and Tune's")


def read_demo_config(path: str | Path) -> dict[str, Any]:
    """The ``supernet`` (train-supernet schema), ``sweep``, ``finetune`` and ``report`` sections."""
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


def train(run, log) -> Path:
    """Train (or finish training) the supernet of a ``SandwichRun``; returns its last checkpoint."""
    from raynas.progress import Progress
    from trainables.checkpoints import latest_checkpoint, read_meta

    cfg = run.cfg
    done = latest_checkpoint(run.run_dir)
    if done is not None and read_meta(done)["epoch"] >= cfg.training.epochs:
        log(f"demo: 1/{STEPS} supernet already trained ({done})")
        return done
    log(f"demo: 1/{STEPS} training the supernet on Ray Train: {cfg.scaling.num_workers} worker(s), "
        f"{cfg.training.epochs} epochs of {cfg.training.steps_per_epoch} sandwich steps, data {cfg.data.dataset}")
    started = time.time()
    result = run.run(Progress(prefix=f"demo: 1/{STEPS} "))
    if result.error is not None:
        raise RuntimeError(f"supernet training failed: {result.error}")
    last = read_meta(latest_checkpoint(run.run_dir))["history"][-1]
    log(f"demo: 1/{STEPS} supernet trained in {time.time() - started:.0f} s: max sub-network val mIoU "
        f"{last['val_miou_max']:.3f}, min {last['val_miou_min']:.3f}")
    return latest_checkpoint(run.run_dir)


def measure_noise(sweep_dir: Path, trials, settings: Mapping[str, Any], log) -> dict:
    """How much the best sub-network's score moves with its images (once; kept in the sweep folder)."""
    from raynas.sweep_folder import SweepFolder
    from trainables.subnet_evaluation import SubnetEvaluation, score_noise

    folder = SweepFolder(sweep_dir)
    if folder.noise_file.is_file():
        return json.loads(folder.noise_file.read_text())
    rows = trials[trials["feasible"] & ~trials["repeat"]]
    best = rows.sort_values(settings["metric"]).iloc[-1]
    arch = {d: best[f"config/{d}"] for d in settings["dimensions"]}
    noise = score_noise(settings["checkpoint"], arch, SubnetEvaluation.load(settings["evaluation"])) | {
        "arch_id": best["arch_id"]}
    folder.noise_file.write_text(json.dumps(noise, indent=1))
    log(f"demo: 2/{STEPS} the best sub-network's mIoU moves by std {noise['std']:.4f} with the scoring images "
        f"(5 draws); the sweep's sub-networks spread by std {rows[settings['metric']].std():.4f}")
    return noise


def run(args: argparse.Namespace) -> int:
    from analysis.report import write_report
    from analysis.results import load_results
    from raynas.cluster import connect
    from raynas.config import SweepConfig
    from raynas.progress import Progress, quiet_ray_logs
    from raynas.sweep import run_sweep
    from raynas.sweep_folder import SweepFolder
    from trainables.finetune import FinetunePlan, FinetuneSettings, scores_line
    from trainables.supernet_training import supernet_run

    log = print
    sections = read_demo_config(args.config)
    out = Path(args.out).expanduser().resolve()
    supernet = dict(sections["supernet"])
    supernet["data"] = choose_data(supernet.get("data", {}), args.data_root, log)
    sweep_dir = out / "sweep"
    # validate everything before starting anything
    training = supernet_run({**supernet, "run": {"storage_path": str(out), "name": "supernet"}})
    fields = {**sections["sweep"], "benchmark": "supernet", "supernet": str(out / "supernet"), "out": str(sweep_dir)}
    if isinstance(fields.get("latency"), Mapping):  # the demo keeps its latency cache beside its results
        fields["latency"] = {"cache_dir": str(out / "latency_cache"), **fields["latency"]}
    sweep = SweepConfig.load(fields)
    finetune = FinetuneSettings.load(sections["finetune"])
    top_k = sections["report"].get("top_k", 10)
    started = time.time()
    connect(args.address, args.verbose)
    out.mkdir(parents=True, exist_ok=True)
    quiet_ray_logs(str(out / "raynas.log"), args.verbose)

    checkpoint = train(training, log)
    sweep = sweep.updated({"supernet": str(checkpoint)})
    resume = SweepFolder(sweep_dir).exists()
    log(f"demo: 2/{STEPS} {'continuing' if resume else 'running'} the sweep: {', '.join(sweep.searchers)}; "
        f"{sweep.budget} feasible sub-networks each, {sweep.seeds} seed(s)")
    trials_file = run_sweep(sweep, resume=resume, verbose=args.verbose, progress=Progress(prefix=f"demo: 2/{STEPS} "))
    trials, settings = load_results(trials_file)
    noise = measure_noise(sweep_dir, trials, settings, log)

    log(f"demo: 3/{STEPS} fine-tuning the best sub-network on Ray Train, then ONNX export and latency")
    models = FinetunePlan(sweep_dir, finetune).run(Progress(prefix=f"demo: 3/{STEPS} "))
    folder = SweepFolder(sweep_dir)  # a rank check run on this sweep (`raynas rank-check`) is shown too
    check = json.loads(folder.rank_check_file.read_text()) if folder.rank_check_file.is_file() else None
    report = write_report(trials, settings, out / "report.html", top_k=top_k, source=str(trials_file),
                          models=models, noise=noise, rank_check=check)
    model = models[0]
    log(f"demo: 4/{STEPS} report: {report}")
    log(f"demo: done in {time.time() - started:.0f} s. The model: {scores_line(model)}, "
        f"{model['flops'] / 1e9:.3f} GMACs at {model['resolution']}, "
        f"latency {model['latency']['latency_ms']:.2f} ms -> {model['files']['onnx']}")
    return 0
