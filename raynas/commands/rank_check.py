"""``python -m raynas rank-check SWEEP_DIR``: how far a supernet sweep's ranking holds after fine-tuning."""

from __future__ import annotations

import argparse
import json
import math

from raynas.cluster import add_cluster_arguments

NAME = "rank-check"
HELP = ("fine-tune k sub-networks of a supernet sweep (spread over its FLOPs range, and its k best feasible) "
        "with one recipe; Kendall tau and Spearman rho between their inherited and fine-tuned scores")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="a sweep's --out over a trained supernet")
    parser.add_argument("--config", help="a YAML file with a `rank_check:` section (flags override it)")
    parser.add_argument("--k", type=int, help="sub-networks per set (default 8)")
    parser.add_argument("--recipe", type=json.loads, help='the fine-tuning recipe as JSON, e.g. \'{"epochs": 4}\'')
    parser.add_argument("--json", action="store_true",
                        help="print only one JSON object: {spread, top_k}, each with n, kendall_tau, ci_low, "
                             "ci_high and spearman (null where scores that do not vary leave nothing to rank)")
    add_cluster_arguments(parser, "Ray's, Train's and Tune's")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from raynas.cluster import connect
    from raynas.progress import Progress, quiet_ray_logs
    from raynas.settings import read_sections
    from trainables.rank_check import SETS, RankCheck, RankCheckSettings

    data = dict(read_sections(args.config, ["rank_check"]).get("rank_check") or {}) if args.config else {}
    data |= {k: getattr(args, k) for k in ("k", "recipe") if getattr(args, k) is not None}
    check = RankCheck(args.sweep_dir, RankCheckSettings.load(data))  # everything checked before Ray starts
    connect(args.address, args.verbose)
    check.folder.rank_check.mkdir(parents=True, exist_ok=True)
    quiet_ray_logs(str(check.folder.rank_check / "raynas.log"), args.verbose)
    progress = Progress(sys.stderr if args.json else None, prefix="rank-check: ")
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():  # stdout: the object
        summary = check.run(progress)
    if args.json:
        keys = ("n", "kendall_tau", "ci_low", "ci_high", "spearman")
        print(json.dumps({name: {k: _finite(summary[name][k]) for k in keys} for name in SETS}))
    else:
        progress.line(f"written: {check.folder.rank_check_file}")
    return 0


def _finite(value):
    """JSON has no NaN: a coefficient that does not exist (constant scores, fewer than 3) is null."""
    return None if isinstance(value, float) and math.isnan(value) else value
