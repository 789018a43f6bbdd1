"""``python -m raynas latency``: measure sub-networks' latency, or fit a latency model.

    python -m raynas latency --arch topformer-t --arch max --resolution 512
    python -m raynas latency --fit 48 --resolution 512 --model-out latency_model.json --address auto
"""

from __future__ import annotations

import argparse
import json
import random

from raynas.errors import UserError

NAME = "latency"
HELP = "measure sub-network latency with ONNX Runtime (on nodes with the 'arm' resource), or fit a latency model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="efficient_topformer", help="search space (default: efficient_topformer)")
    parser.add_argument("--arch", action="append", default=[],
                        help="architecture to measure: min, max, random, a reference name (topformer-t/s/b: its "
                             "nearest architecture) or a JSON file; repeatable")
    parser.add_argument("--fit", type=int, default=0, metavar="N",
                        help="measure the smallest, the largest and N-2 random sub-networks and fit a latency model")
    parser.add_argument("--model-out", default="latency_model.json", help="where --fit writes the model (JSON)")
    parser.add_argument("--resolution", type=int, nargs="+", default=[512], help="input size: S or H W (default 512)")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 3)")
    parser.add_argument("--repeats", type=int, help="timed runs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", dest="cache_dir", help="measurement cache (default ~/.cache/raynas/latency)")
    parser.add_argument("--resource", help="Ray resource of the measuring nodes (default arm)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. auto; default RAY_ADDRESS); without one, measure in this process")
    parser.add_argument("--verbose", action="store_true", help="show Ray's own log output")


def run(args: argparse.Namespace) -> int:
    import os

    from raynas.latency.model import fit_latency_model
    from raynas.latency.onnx_timing import LatencySettings
    from raynas.latency.service import LatencyService, arch_requests
    from search_spaces import get_space
    from search_spaces.base import WeightSharingSpace

    if not args.arch and not args.fit:
        raise UserError("latency: give --arch NAME (repeatable) or --fit N")
    if args.fit and args.fit < 4:
        raise UserError(f"latency --fit: needs at least 4 sub-networks, got {args.fit}")
    given = {k: getattr(args, k) for k in ("threads", "warmup", "repeats", "resource", "cache_dir")
             if getattr(args, k) is not None}
    settings = LatencySettings.load(
        {"resolution": args.resolution[0] if len(args.resolution) == 1 else args.resolution, **given}, "latency")
    resolution = tuple(settings.resolution)
    space = get_space(args.space)
    if not isinstance(space, WeightSharingSpace):
        raise UserError(f"--space: {args.space!r} has no network to export (not a weight-sharing space)")
    named = [space.arch_from_name(name, seed=args.seed) for name in args.arch]
    rng = random.Random(args.seed)
    fitted = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(args.fit - 2)] if args.fit else []

    if args.address or os.environ.get("RAY_ADDRESS"):
        from raynas.cluster import connect

        connect(args.address, args.verbose)
    service = LatencyService.from_settings(settings)
    supernet = space.build_supernet(args.num_classes)
    results = service.measure(arch_requests(space, supernet, named + fitted, resolution))
    for name, result in zip(args.arch, results):
        print(f"{name} ({result['arch_id']}): median {result['latency_ms']:.2f} ms, p90 {result['latency_p90_ms']:.2f} ms, "
              f"IQR {result['latency_iqr_ms']:.2f} ms{' (cached)' if result['cached'] else ''}")
    print(f"device: {json.dumps(results[0]['device'])}")
    print(f"measured {service.measurements}, from the cache {service.cache_hits} ({service.cache.path})")
    if args.fit:
        measured = [r["latency_ms"] * 1e3 for r in results[len(named):]]
        model = fit_latency_model(space, fitted, measured, resolution, args.num_classes, device=results[-1]["device"],
                                  seed=args.seed)
        model.save(args.model_out)
        report = model.report
        print(f"latency model: held-out MAPE {report['test_mape']:.1f}% on {report['n_test']} sub-networks "
              f"(train {report['train_mape']:.1f}% on {report['n_train']}; predicting the mean: "
              f"{report['baseline_test_mape']:.1f}%) -> {args.model_out}")
    return 0
