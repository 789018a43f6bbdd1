"""Latency measurement costs and the latency model's held-out error.

1. TopFormer-T/S/B (150 classes) at ``--resolution``: seconds to export to
   ONNX, to create the ONNX Runtime session and to run warm-up + repeats,
   the latency statistics, and the time of a cache hit for the same request.
2. ``--subnets`` random Efficient-TopFormer sub-networks at
   ``--model-resolution``: a latency model fitted on 75 % of them, its MAPE on
   the held-out 25 % (and the MAPE of predicting the training mean), for the
   median, the minimum and the thread CPU time of the runs as the latency.

Measured in this process (no Ray), one ONNX Runtime thread by default:

    python benchmarks/latency.py [--threads 1] [--subnets 48] [--model-resolution 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

from raynas.latency.model import fit_latency_model
from raynas.latency.onnx_timing import TimingSettings
from raynas.latency.service import LatencyRequest, LatencyService, arch_requests
from search_spaces import get_space


def references(args, cache_dir: str) -> None:
    space = get_space("efficient_topformer")
    settings = TimingSettings(threads=args.threads, warmup=args.warmup, repeats=args.repeats)
    requests = [LatencyRequest(name, args.resolution, lambda name=name: space.reference_model(name, 150))
                for name in space.REFERENCE_NAMES]
    service = LatencyService(cache_dir, settings=settings)
    print(f"## TopFormer at {args.resolution}x{args.resolution}, {args.threads} thread(s), "
          f"{args.warmup} warm-up + {args.repeats} timed runs")
    print("| model | GMACs | ONNX MB | export s | session s | runs s | median ms | p90 ms | IQR ms | min ms | CPU ms | cache hit ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for request in requests:
        (r,) = service.measure([request])
        start = time.perf_counter()
        (hit,) = LatencyService(cache_dir, settings=settings).measure([request])
        hit_ms = (time.perf_counter() - start) * 1e3
        assert hit["cached"] and hit["latency_ms"] == r["latency_ms"]
        gmacs = space.reference_cost(request.arch_id, args.resolution)["flops"] / 1e9
        print(f"| {request.arch_id} | {gmacs:.2f} | {r['onnx_bytes'] / 1e6:.1f} | {r['export_s']:.2f} | {r['session_s']:.3f} | "
              f"{r['runs_s']:.2f} | {r['latency_ms']:.1f} | {r['latency_p90_ms']:.1f} | {r['latency_iqr_ms']:.1f} | "
              f"{r['latency_min_ms']:.1f} | {r['latency_cpu_ms'] or float('nan'):.1f} | {hit_ms:.2f} |")
    print(f"device: {r['device']}")


def latency_model(args, cache_dir: str) -> None:
    space = get_space("efficient_topformer")
    supernet = space.build_supernet(num_classes=150)
    rng = random.Random(args.seed)
    archs = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(args.subnets - 2)]
    settings = TimingSettings(threads=args.threads, warmup=args.warmup, repeats=args.model_repeats)
    service = LatencyService(cache_dir, settings=settings)
    start = time.perf_counter()
    results = service.measure(arch_requests(space, supernet, archs, args.model_resolution))
    took = time.perf_counter() - start
    print(f"\n## Latency model: {len(archs)} sub-networks at {args.model_resolution}x{args.model_resolution}, "
          f"{args.warmup} warm-up + {args.model_repeats} timed runs, measured in {took:.0f} s")
    print("| measured latency | train | held out | train MAPE % | held-out MAPE % | max held-out APE % | predict-the-mean MAPE % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    stats = {"latency_ms": "median", "latency_min_ms": "minimum", "latency_cpu_ms": "thread CPU time (median)"}
    for stat, label in stats.items():
        if results[0][stat] is None:
            continue
        measured = [r[stat] * 1e3 for r in results]
        for seed in range(args.splits):
            report = fit_latency_model(space, archs, measured, args.model_resolution, 150, seed=seed).report
            print(f"| {label}, split {seed} | {report['n_train']} | {report['n_test']} | "
                  f"{report['train_mape']:.1f} | {report['test_mape']:.1f} | {report['test_max_ape']:.1f} | "
                  f"{report['baseline_test_mape']:.1f} |")
    for stat, label in stats.items():
        span = [r[stat] for r in results if r[stat] is not None]
        if span:
            print(f"measured {label}: {min(span):.1f}–{max(span):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--subnets", type=int, default=48)
    parser.add_argument("--model-resolution", type=int, default=256)
    parser.add_argument("--model-repeats", type=int, default=10)
    parser.add_argument("--splits", type=int, default=3, help="train/test splits reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache_dir:
        references(args, cache_dir)
        if not args.skip_model:
            latency_model(args, cache_dir)


if __name__ == "__main__":
    main()
