"""``python -m raynas sweep``: compare searchers as one Ray Tune experiment on a cluster (see ``raynas.sweep``)."""

from __future__ import annotations

import argparse
import json
import sys

from raynas.cluster import add_cluster_arguments
from raynas.config import SweepConfig
from raynas.settings import read_sections

NAME = "sweep"
HELP = "run every (searcher, seed) at once as one Ray Tune experiment, same budget and constraint for each"

# CLI flag (argparse dest) -> sweep field; flags override the --config file
FLAGS = ("benchmark", "table", "accuracy_column", "latency_column", "max_latency", "max_flops", "searchers",
         "budget", "seeds", "out", "max_concurrent_trials", "max_concurrent_total", "trial_resources",
         "searcher_options", "supernet", "evaluation", "latency", "latency_model", "eval_seconds", "max_failures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="an experiment YAML file with a `sweep:` section (flags override it)")
    from trainables import OBJECTIVES

    parser.add_argument("--benchmark", help=f"what a trial evaluates, one of {list(OBJECTIVES)} (default nb201): a "
                                            f"tabular benchmark, a trained supernet, or a search that trains")
    parser.add_argument("--table", help="nb201: the benchmark table (Parquet or CSV)")
    parser.add_argument("--accuracy-column", dest="accuracy_column", help="nb201: the accuracy column")
    parser.add_argument("--latency-column", dest="latency_column", help="nb201: the latency column (ms)")
    parser.add_argument("--eval-seconds", dest="eval_seconds", type=float,
                        help="nb201: each feasible evaluation takes S seconds (a stand-in for an expensive one)")
    parser.add_argument("--max-latency", dest="max_latency", type=float, help="constraint: latency_ms <= MS")
    parser.add_argument("--max-flops", dest="max_flops", type=float, help="constraint: flops (MACs) <= N")
    parser.add_argument("--searchers", help="comma-separated: cds,cds_uniform,evolution,optuna,nevergrad,random")
    parser.add_argument("--budget", type=int, help="feasible architectures per (searcher, seed) (default 200)")
    parser.add_argument("--seeds", type=int, help="seeds 0..K-1 per searcher (default 1)")
    parser.add_argument("--out", help="the sweep directory")
    parser.add_argument("--max-concurrent-trials", dest="max_concurrent_trials", type=int,
                        help="trials in flight per run (default: no limit of its own, a fair share)")
    parser.add_argument("--max-concurrent-total", dest="max_concurrent_total", type=int,
                        help="trials in flight in the whole sweep (default: as many as the cluster runs)")
    parser.add_argument("--trial-resources", dest="trial_resources", type=json.loads,
                        help='what one trial asks the cluster for, JSON, e.g. \'{"CPU": 2, "GPU": 0.25}\'')
    parser.add_argument("--max-failures", dest="max_failures", type=int,
                        help="retries of a trial that raises before it is recorded failed (default 2)")
    parser.add_argument("--searcher-options", dest="searcher_options", type=json.loads,
                        help='JSON, e.g. \'{"evolution": {"population_size": 20}}\'')
    parser.add_argument("--space", help="efficient_topformer: search a trained supernet (same as --benchmark "
                                        "supernet; the space is the checkpoint's)")
    parser.add_argument("--supernet", help="supernet: the checkpoint (folder, supernet.pt or training run)")
    parser.add_argument("--evaluation", type=json.loads,
                        help='supernet: JSON, e.g. \'{"calibration_images": 32, "val_images": 64, "resolution": 512}\'')
    parser.add_argument("--latency", type=json.loads,
                        help='supernet: measure latency per trial, JSON, e.g. \'{"resolution": 512, "threads": 1}\'')
    parser.add_argument("--latency-model", dest="latency_model",
                        help="supernet: a fitted latency model (raynas latency --fit) predicting latency_pred_ms")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --out (its sweep.json says how)")
    add_cluster_arguments(parser, "Ray's and Tune's")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The sweep section: the resumed sweep's saved config, else --config, then the flags over it."""
    from raynas.sweep_folder import SweepFolder

    data: dict = {}
    if args.resume and args.out and SweepFolder(args.out).exists():
        data = SweepFolder(args.out).read_settings()["config"]
    if args.config:
        data |= dict(read_sections(args.config, ["sweep"]).get("sweep") or {})
    data |= {flag: getattr(args, flag) for flag in FLAGS if getattr(args, flag) is not None}
    if args.space is not None:
        data["benchmark"] = _benchmark_of_space(args.space)
    return SweepConfig.load(data)


def _benchmark_of_space(space: str) -> str:
    """``--space``: nb201 is the tabular benchmark; a weight-sharing space is searched through its supernet."""
    from raynas.errors import check_choice
    from search_spaces import SPACE_NAMES

    check_choice("--space", space, SPACE_NAMES)
    return "nb201" if space == "nb201" else "supernet"


def run(args: argparse.Namespace) -> int:
    from raynas.sweep import run_sweep

    try:
        run_sweep(config_from_args(args), resume=args.resume, address=args.address, verbose=args.verbose)
    except KeyboardInterrupt as stop:
        print(f"raynas sweep: interrupted: {stop or 'Ctrl+C; continue with --resume'}", file=sys.stderr)
        return 130
    return 0
