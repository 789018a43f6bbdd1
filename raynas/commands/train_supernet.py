"""``python -m raynas train-supernet --config FILE``: train the weight-sharing supernet on Ray Train."""

from __future__ import annotations

import argparse

NAME = "train-supernet"
HELP = "train the weight-sharing supernet (sandwich rule, inplace distillation) on Ray Train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training YAML (see configs/quickstart_cpu.yaml)")
    parser.add_argument("--resume", default=None,
                        help="checkpoint folder or run directory to start from (a run with the same "
                             "run.storage_path/run.name resumes from its latest checkpoint by itself)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: RAY_ADDRESS, else a running cluster, else a local Ray)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and Ray Train's own log output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raynas.cluster import connect
    from raynas.progress import Progress, quiet_ray_logs
    from raynas.training_config import SupernetTrainingConfig
    from trainables.supernet_training import train_supernet

    config = SupernetTrainingConfig.from_yaml(args.config)
    connect(args.address, args.verbose)
    run_dir = Path(config.run.storage_path) / config.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_ray_logs(str(run_dir / "raynas.log"), args.verbose)
    progress = Progress(prefix="train-supernet: ")
    result = train_supernet(config, resume=args.resume, progress=progress)
    if result.error is not None:
        raise RuntimeError(f"supernet training failed: {result.error}")
    progress.line(f"checkpoint: {result.checkpoint.path} (for the sweep objective `supernet`)")
    return 0
