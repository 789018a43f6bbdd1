"""``python -m raynas pretrain --config FILE``: ImageNet pre-training of the supernet's backbone on Ray Train."""

from __future__ import annotations

import argparse

from raynas.cluster import add_cluster_arguments

NAME = "pretrain"
HELP = ("pre-train the supernet's backbone (sandwich rule) on an ImageNet-layout folder on Ray Train; "
        "train-supernet starts from its checkpoint with init: CHECKPOINT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="pre-training YAML (see configs/pretrain_imagenet.yaml)")
    parser.add_argument("--data-root", dest="data_root", default=None,
                        help="the ImageNet-layout folder (train/CLASS/*.jpg, val/CLASS/*.jpg); default: the config's")
    add_cluster_arguments(parser, "Ray's and Ray Train's")


def run(args: argparse.Namespace) -> int:
    from raynas.settings import read_sections
    from trainables.pretraining import PretrainConfig, pretrain_run

    sections = read_sections(args.config, PretrainConfig.model_fields)
    if args.data_root is not None:
        sections["data"] = {**(sections.get("data") or {}), "root": args.data_root}
    run = pretrain_run(sections)  # folder and init checked before Ray starts or anything is written
    run.run_command(NAME, args.address, args.verbose,
                    done="checkpoint: {checkpoint} (for train-supernet: init: {checkpoint})")
    return 0
