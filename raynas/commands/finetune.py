"""``python -m raynas finetune SWEEP_DIR``: fine-tune a sweep's winners on Ray Train, export and measure them."""

from __future__ import annotations

import argparse
import json

from raynas.cluster import add_cluster_arguments

NAME = "finetune"
HELP = "fine-tune the best (or Pareto-front) sub-networks a sweep found on Ray Train; ONNX, weights, metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="a sweep's --out: over a trained supernet, or of a search that trains "
                                          "(each found architecture with its own run's weights)")
    parser.add_argument("--config", help="a YAML file with a `finetune:` section (flags override it)")
    parser.add_argument("--select", choices=["best", "pareto"], help="the best top-k, or top-k front points")
    parser.add_argument("--top-k", dest="top_k", type=int, help="how many models (default 1)")
    parser.add_argument("--from-scratch", dest="from_scratch", action="store_const", const=True,
                        help="train fresh networks instead of fine-tuning the inherited weights")
    parser.add_argument("--recipe", type=json.loads, help='JSON, e.g. \'{"epochs": 5, "lr": 0.001}\'')
    parser.add_argument("--search", type=json.loads,
                        help='search the recipe with Ray Tune and ASHA, JSON, e.g. \'{"num_samples": 8}\'')
    parser.add_argument("--out", help="where the models go (default SWEEP_DIR/finetune)")
    add_cluster_arguments(parser, "Ray's and Ray Train's")


def run(args: argparse.Namespace) -> int:
    from raynas.cluster import connect
    from raynas.progress import Progress, quiet_ray_logs
    from raynas.settings import read_sections
    from trainables.finetune import FinetunePlan, FinetuneSettings

    data = dict(read_sections(args.config, ["finetune"]).get("finetune") or {}) if args.config else {}
    data |= {k: getattr(args, k) for k in ("select", "top_k", "from_scratch", "recipe", "search", "out")
             if getattr(args, k) is not None}
    plan = FinetunePlan(args.sweep_dir, FinetuneSettings.load(data))  # everything checked before Ray starts
    connect(args.address, args.verbose)
    plan.out.mkdir(parents=True, exist_ok=True)
    quiet_ray_logs(str(plan.out / "raynas.log"), args.verbose)
    plan.run(Progress(prefix="finetune: "))
    return 0
