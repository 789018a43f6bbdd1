"""``python -m raynas report DIR``: the HTML report of a sweep directory."""

from __future__ import annotations

import argparse
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
    from analysis.results import load_results

    trials, settings = load_results(args.dir)  # an interrupted sweep: read from Tune's experiments
    if trials.empty:
        raise UserError(f"{args.dir}: the sweep has no trials yet")
    path = write_report(trials, settings, args.out or args.dir / "report.html", top_k=args.top_k, source=str(args.dir))
    print(path)
    return 0
