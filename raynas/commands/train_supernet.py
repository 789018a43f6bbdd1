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
                        help="Ray cluster address (default: a running cluster, else a local one)")


def run(args: argparse.Namespace) -> int:
    from raynas.cluster import connect
    from raynas.training_config import SupernetTrainingConfig
    from trainables.supernet_training import train_supernet

    config = SupernetTrainingConfig.from_yaml(args.config)
    connect(args.address)
    result = train_supernet(config, resume=args.resume)
    frame = result.metrics_dataframe
    if frame is not None:
        columns = [c for c in ("epoch", "step", "loss_max", "loss_distill", "val_miou_max", "val_miou_min",
                               "images_per_s") if c in frame]
        print(frame[columns].to_string(index=False))
    print(f"supernet checkpoint: {result.checkpoint.path} (for the sweep objective `supernet`)")
    return 0
