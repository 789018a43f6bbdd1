"""``python -m raynas report DIR``: the HTML report of a sweep directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from raynas.errors import UserError, check_positive

NAME = "report"
HELP = "write the HTML report (ranking, Pareto fronts, curves, best architectures) of a sweep directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the sweep's --out directory")
    parser.add_argument("--out", type=Path, help="the HTML file to write (default DIR/report.html; PNGs go beside it)")
    parser.add_argument("--top-k", type=int, default=10, help="how many best architectures to list (default 10)")


def run(args: argparse.Namespace) -> int:
    check_positive("--top-k", args.top_k)
    if not args.dir.is_dir():
        raise UserError(f"{args.dir}: no such sweep directory")
    from analysis.report import write_report
    from analysis.results import load_epochs, load_results
    from raynas.sweep_folder import SweepFolder
    from trainables.finetune import finetuned_models

    trials, settings = load_results(args.dir)  # an interrupted sweep: read from its journal and saved state
    if trials.empty:
        raise UserError(f"{args.dir}: the sweep has no trials yet")
    folder = SweepFolder(args.dir)
    noise = json.loads(folder.noise_file.read_text()) if folder.noise_file.is_file() else None
    check = json.loads(folder.rank_check_file.read_text()) if folder.rank_check_file.is_file() else None
    path = write_report(trials, settings, args.out or args.dir / "report.html", top_k=args.top_k, source=str(args.dir),
                        models=finetuned_models(folder.finetune), noise=noise, epochs=load_epochs(args.dir),
                        rank_check=check)
    print(path)
    return 0
