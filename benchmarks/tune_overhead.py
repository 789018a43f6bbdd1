"""Time per trial through the sweep (Ray Tune) versus the same evaluations in a plain Python loop.

    python benchmarks/tune_overhead.py [--searcher random] [--budget 200] [--concurrency 2]

Both sides run the same searcher (same seed, budget, table lookups). The Tune
side is one ``raynas.sweep.run_one`` (one Tuner, ``reuse_actors=True``); its
time splits into start-up (Tuner start until the first result: actor start,
first trial), steady state (per trial, between the first and the last result)
and the rest (end of the last trial until ``fit`` returns: shutdown, results).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from plain_loop import run_loop

from raynas.config import SweepConfig, build
from raynas.paths import shared_data_dir
from raynas.sweep import run_one
from trainables import make_objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_cifar10.parquet"))
    parser.add_argument("--searcher", default="random")
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray.tune import ExperimentAnalysis

    with tempfile.TemporaryDirectory() as tmp:
        config = build(SweepConfig, {"table": args.table, "accuracy_column": "cifar10_test_acc",
                                     "latency_column": "lat_raspi4_ms", "budget": args.budget,
                                     "max_concurrent_trials": args.concurrency, "out": tmp,
                                     "searchers": [args.searcher]}, "sweep")
        objective = make_objective("nb201", **config.objective_options())
        _, spent = run_loop(objective, config, args.searcher, seed=0)

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        t0 = time.time()
        summary = run_one(Path(tmp), objective, config, args.searcher, 0)
        tune_total = time.time() - t0
        frame = ExperimentAnalysis(str(Path(tmp) / args.searcher / "seed_0")).dataframe()
        ray.shutdown()

    n = summary["trials"]
    ends = sorted(frame["timestamp"])  # s resolution
    first_result = min(ends) - t0
    steady = (max(ends) - min(ends)) / max(n - 1, 1)
    in_trainable = frame["time_total_s"].mean()
    print(f"searcher {args.searcher}, {n} trials, max_concurrent_trials {args.concurrency}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':<34}{'total s':>10}{'ms/trial':>10}")
    print(f"{'plain loop':<34}{spent['total_s']:>10.3f}{1e3 * spent['total_s'] / n:>10.3f}")
    print(f"{'  searcher suggest/complete':<34}{spent['searcher_s']:>10.3f}{1e3 * spent['searcher_s'] / n:>10.3f}")
    print(f"{'  table lookups':<34}{spent['evaluation_s']:>10.3f}{1e3 * spent['evaluation_s'] / n:>10.3f}")
    print(f"{'Ray Tune (one Tuner)':<34}{tune_total:>10.3f}{1e3 * tune_total / n:>10.1f}")
    print(f"{'  start-up to first result':<34}{first_result:>10.0f}")
    print(f"{'  steady state per trial':<34}{'':>10}{1e3 * steady:>10.0f}")
    print(f"{'  last result to end of fit()':<34}{t0 + summary['fit_s'] - max(ends):>10.0f}")
    print(f"{'  after fit(): results, summary':<34}{tune_total - summary['fit_s']:>10.1f}")
    print(f"{'  trial time_total_s (to report)':<34}{'':>10}{1e3 * in_trainable:>10.1f}")
    print(f"ratio Tune / plain loop: {tune_total / spent['total_s']:.0f}x")


if __name__ == "__main__":
    main()
