"""Time per trial of a sweep through Ray Tune versus the same sweep searcher in a plain Python loop.

    python benchmarks/tune_overhead.py [--searchers random] [--seeds 4] [--budget 100]

Both sides run the same sweep (same searchers, seeds, budget, table lookups);
the Tune side is ``raynas.sweep.run_sweep`` (one experiment for every run,
actors reused, only the JSON result logger). Its time splits into start-up
(until the first result), steady state (per trial, between the first and
the last result) and the rest (writing the results). The plain loop is
``plain_loop.run_loop``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from plain_loop import run_loop

from raynas.config import SweepConfig
from raynas.paths import shared_data_dir
from raynas.progress import Progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_cifar10.parquet"))
    parser.add_argument("--searchers", default="random")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2, help="max_concurrent_trials per run")
    args = parser.parse_args()

    from analysis.results import load_results
    from raynas.sweep import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        config = SweepConfig.load({"table": args.table, "accuracy_column": "cifar10_test_acc",
                                   "latency_column": "lat_raspi4_ms", "budget": args.budget, "seeds": args.seeds,
                                   "max_concurrent_trials": args.concurrency, "out": tmp,
                                   "searchers": args.searchers})
        loop_trials, _, spent = run_loop(config)
        t0 = time.time()
        trials, _ = load_results(run_sweep(config, progress=Progress(stream=open(os.devnull, "w"))))
        tune_total = time.time() - t0

    n = len(trials[trials["trial_id"] != ""])
    ends = trials.loc[trials["trial_id"] != "", "wall_time_s"].sort_values()
    steady = (ends.iloc[-1] - ends.iloc[0]) / max(n - 1, 1)
    print(f"searchers {args.searchers}, {args.seeds} seeds, {n} trials, max_concurrent_trials {args.concurrency}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"{'':<36}{'total s':>10}{'ms/trial':>10}")
    print(f"{'plain loop':<36}{spent['total_s']:>10.3f}{1e3 * spent['total_s'] / n:>10.2f}")
    print(f"{'  searcher suggest/complete':<36}{spent['searcher_s']:>10.3f}{1e3 * spent['searcher_s'] / n:>10.2f}")
    print(f"{'  evaluations (table lookups)':<36}{spent['evaluation_s']:>10.3f}{1e3 * spent['evaluation_s'] / n:>10.2f}")
    print(f"{'Ray Tune (run_sweep, Ray start incl.)':<36}{tune_total:>10.2f}{1e3 * tune_total / n:>10.1f}")
    print(f"{'  first result after':<36}{ends.iloc[0]:>10.1f}")
    print(f"{'  steady state per trial':<36}{'':>10}{1e3 * steady:>10.1f}")
    print(f"ratio Tune / plain loop: {tune_total / spent['total_s']:.0f}x")
    assert len(loop_trials) >= n


if __name__ == "__main__":
    main()
