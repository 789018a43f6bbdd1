"""``python -m raynas sweep``: compare searchers on one Ray cluster (see ``raynas.sweep``)."""

from __future__ import annotations

import argparse
import json
import sys

from raynas.config import SweepConfig, build, load_sections

NAME = "sweep"
HELP = "run every (searcher, seed) as a Ray Tune experiment with the same budget and constraint"

# CLI flag -> SweepConfig field (flags override the --config file)
_FLAGS = {"benchmark": "benchmark", "table": "table", "accuracy_column": "accuracy_column",
          "latency_column": "latency_column", "max_latency": "max_latency", "searchers": "searchers",
          "budget": "budget", "seeds": "seeds", "out": "out", "max_concurrent_trials": "max_concurrent_trials",
          "searcher_options": "searcher_options", "max_flops": "max_flops", "supernet": "supernet",
          "evaluation": "evaluation", "latency": "latency", "latency_model": "latency_model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="an experiment YAML file with a `sweep:` section (flags override it)")
    parser.add_argument("--benchmark", help="what a trial evaluates (default nb201)")
    parser.add_argument("--table", help="nb201: the benchmark table (Parquet or CSV)")
    parser.add_argument("--accuracy-column", dest="accuracy_column", help="nb201: the accuracy column")
    parser.add_argument("--latency-column", dest="latency_column", help="nb201: the latency column (ms)")
    parser.add_argument("--max-latency", dest="max_latency", type=float, help="constraint: latency_ms <= MS")
    parser.add_argument("--searchers", help="comma-separated: cds,cds_uniform,evolution,optuna,nevergrad,random")
    parser.add_argument("--budget", type=int, help="feasible architectures per (searcher, seed) (default 200)")
    parser.add_argument("--seeds", type=int, help="seeds 0..K-1 per searcher (default 1)")
    parser.add_argument("--out", help="the sweep directory")
    parser.add_argument("--max-concurrent-trials", dest="max_concurrent_trials", type=int,
                        help="concurrent trials per Tuner (default 2)")
    parser.add_argument("--searcher-options", dest="searcher_options", type=json.loads,
                        help='JSON, e.g. \'{"evolution": {"population_size": 20}}\'')
    parser.add_argument("--space", help="efficient_topformer: search a trained supernet (same as --benchmark "
                                        "supernet; the space is the checkpoint's)")
    parser.add_argument("--supernet", help="supernet: the checkpoint (folder, supernet.pt or training run)")
    parser.add_argument("--max-flops", dest="max_flops", type=float, help="constraint: flops (MACs) <= N")
    parser.add_argument("--evaluation", type=json.loads,
                        help='supernet: JSON, e.g. \'{"calibration_images": 32, "val_images": 64, "resolution": 512}\'')
    parser.add_argument("--latency", type=json.loads,
                        help='supernet: measure latency per trial, JSON, e.g. \'{"resolution": 512, "threads": 1}\'')
    parser.add_argument("--latency-model", dest="latency_model",
                        help="supernet: a fitted latency model (raynas latency --fit) predicting latency_pred_ms")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --out")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    data = {}
    if args.config:
        data = load_sections(args.config, {"sweep": SweepConfig})["sweep"].to_dict()
    data.update({field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None})
    if args.space is not None:
        data["benchmark"] = _benchmark_of_space(args.space)
    if args.resume and args.out and not args.config and args.table is None and args.supernet is None:
        from raynas.sweep import load_settings

        data = _from_settings(load_settings(args.out), args.out) | data
    return build(SweepConfig, data, "sweep")


def _benchmark_of_space(space: str) -> str:
    """``--space``: nb201 is the tabular benchmark; a weight-sharing space is searched through its supernet."""
    from raynas.errors import check_choice
    from search_spaces import SPACE_NAMES

    check_choice("--space", space, SPACE_NAMES)
    return "nb201" if space == "nb201" else "supernet"


def _from_settings(settings: dict, out: str) -> dict:
    """A resumed sweep's fields from its sweep.json (so `--out DIR --resume` alone suffices)."""
    fields = {"benchmark": settings["benchmark"], "searchers": settings["searchers"], "budget": settings["budget"],
              "seeds": len(settings["seeds"]), "out": out, "max_concurrent_trials": settings["max_concurrent_trials"],
              "max_failures": settings.get("max_failures", SweepConfig.max_failures),  # older sweeps lack it
              "searcher_options": settings["searcher_options"]}
    constraint = settings["constraint"]
    if constraint:
        fields["max_flops" if constraint["metric"] == "flops" else "max_latency"] = constraint["limit"]
    if settings["benchmark"] == "supernet":
        from trainables.subnet_evaluation import EvaluationSettings

        evaluation = {k: settings[k] for k in EvaluationSettings.__dataclass_fields__
                      if k not in ("checkpoint", "latency")}
        return fields | {"supernet": settings["checkpoint"], "evaluation": evaluation,
                         "latency": settings["latency"], "latency_model": settings["latency_model"]}
    return fields | {"table": settings["table"], "accuracy_column": settings["accuracy_column"],
                     "latency_column": settings["latency_column"]}


def run(args: argparse.Namespace) -> int:
    from raynas.sweep import run_sweep

    try:
        run_sweep(config_from_args(args), resume=args.resume)
    except KeyboardInterrupt as stop:
        print(f"raynas sweep: interrupted: {stop or 'Ctrl+C; continue with --resume'}", file=sys.stderr)
        return 130
    return 0
