"""``python -m raynas train-supernet --config FILE``: train the weight-sharing supernet on Ray Train."""

from __future__ import annotations

import argparse

from raynas.cluster import add_cluster_arguments

NAME = "train-supernet"
HELP = "train the weight-sharing supernet (sandwich rule, inplace distillation) on Ray Train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training YAML (see configs/quickstart_cpu.yaml)")
    parser.add_argument("--resume", default=None,
                        help="checkpoint folder or run directory to start from (a run with the same "
                             "run.storage_path/run.name resumes from its latest checkpoint by itself)")
    add_cluster_arguments(parser, "Ray's and Ray Train's")


def run(args: argparse.Namespace) -> int:
    from raynas.training_config import SupernetTrainingConfig
    from trainables.supernet_training import supernet_run

    run = supernet_run(SupernetTrainingConfig.from_yaml(args.config), resume=args.resume)  # checked first
    run.run_command(NAME, args.address, args.verbose, done="checkpoint: {checkpoint} (for the sweep objective "
                                                            "`supernet`)")
    return 0
