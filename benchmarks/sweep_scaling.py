"""A sweep on simulated clusters of 2, 4, 8 and 16 trial slots: wall time and utilisation.

    python benchmarks/sweep_scaling.py [--slots 2 4 8 16] [--eval-seconds 4] [--budget 20] [--seeds 4]

Each cluster is ``ray.cluster_utils.Cluster``: a head without CPUs and worker
nodes of at most 4 (fake) CPUs, as many as the slots need. The sweep is 5
searchers × ``--seeds`` seeds × ``--budget`` feasible evaluations of
NAS-Bench-201 where every evaluation takes ``--eval-seconds`` of wall clock
(``eval_seconds``), one CPU per trial. Utilisation = busy trial-seconds ÷
(slots × wall time), wall time from the sweep's start (its searcher is
made) to its last result. The first row is the serial design measured the
same way on the largest cluster: at most 2 trials in flight in the whole
sweep (what one Tuner per run, run one after another, allowed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from raynas.config import SweepConfig
from raynas.paths import shared_data_dir
from raynas.progress import Progress

SEARCHERS = "cds,evolution,optuna,nevergrad,random"


def measure(slots: int, args, out: str, total: int | None = None) -> dict:
    """Run the sweep on a fresh simulated cluster of ``slots`` CPUs; wall time and utilisation."""
    import ray
    from ray.cluster_utils import Cluster

    from analysis.results import load_results
    from raynas.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(-(-slots // 4)):
        cluster.add_node(num_cpus=min(4, slots))
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        config = SweepConfig.load({
            "table": args.table, "accuracy_column": "cifar10_test_acc", "latency_column": "lat_raspi4_ms",
            "searchers": SEARCHERS, "seeds": args.seeds, "budget": args.budget, "eval_seconds": args.eval_seconds,
            "trial_resources": {"CPU": 1}, "max_concurrent_total": total, "out": out})
        started = time.time()
        trials, _ = load_results(run_sweep(config, progress=Progress(stream=open(os.devnull, "w"))))
        total_s = time.time() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    evaluations = int((trials["feasible"] & ~trials["repeat"]).sum())
    wall = float(trials["wall_time_s"].max())
    busy = evaluations * args.eval_seconds
    return {"slots": slots, "evaluations": evaluations, "wall_s": wall, "total_s": total_s,
            "utilisation": busy / (slots * wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_cifar10.parquet"))
    parser.add_argument("--slots", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--eval-seconds", type=float, default=4.0)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--no-serial", action="store_true", help="skip the serial row")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_serial:
            rows.append(("serial: 2 trials in flight", measure(max(args.slots), args, f"{tmp}/serial", total=2)))
        for slots in args.slots:
            rows.append((f"all runs at once, {slots} slots", measure(slots, args, f"{tmp}/s{slots}")))
    base = next(r for name, r in rows if name.startswith("all runs"))
    print(f"5 searchers x {args.seeds} seeds x {args.budget} evaluations of {args.eval_seconds:g} s, "
          f"1 CPU per trial; cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print("| sweep | slots | evaluations | wall s | utilisation | speed-up vs first all-at-once row "
          "| ideal | fraction of linear |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        speedup = base["wall_s"] / r["wall_s"]
        ideal = r["slots"] / base["slots"] if name.startswith("all runs") else float("nan")
        print(f"| {name} | {r['slots']} | {r['evaluations']} | {r['wall_s']:.0f} | {r['utilisation']:.2f} | "
              f"{speedup:.2f} | {ideal:.0f} | {speedup / ideal:.2f} |")


if __name__ == "__main__":
    main()
