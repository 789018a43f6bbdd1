"""``python -m raynas compare DIR``: regret of each searcher in a sweep (see ``analysis.regret``)."""

from __future__ import annotations

import argparse
import json

NAME = "compare"
HELP = "mean/median regret and hit rate of each searcher after 25/50/100/200 feasible evaluations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a sweep directory (or its trials.parquet)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from analysis.regret import compare, format_table
    from analysis.results import load_results

    trials, settings = load_results(args.dir)
    result = compare(trials, settings)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0
