"""Analytic cost model speed: architectures per second, against building and counting a model.

    python benchmarks/cost_model_speed.py            # 20,000 random archs, 512x512, 150 classes

Target: at least 10,000 architectures per second for ``space.cost`` (MACs, the search's
convention); ``convention="mmcv"`` (TopFormer's published convention) is timed beside it.
Rates are per second of CPU time of this one-threaded process.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from search_spaces import get_space
from search_spaces.flop_counter import count


def _rate(fn, items) -> float:
    """Items per second of this process's CPU time (robust on a shared machine)."""
    start = time.process_time()
    for item in items:
        fn(item)
    return len(items) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20_000)
    parser.add_argument("--counted", type=int, default=5, help="architectures built and counted for the comparison")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    space = get_space("efficient_topformer")
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    cost = _rate(lambda a: space.cost(a, args.resolution), archs)
    mmcv = _rate(lambda a: space.cost(a, args.resolution, convention="mmcv"), archs)
    breakdown = _rate(lambda a: space.cost_breakdown(a, args.resolution), archs)
    counted = _rate(lambda a: count(space.build_model(a), args.resolution), archs[: args.counted])
    print(f"{args.archs} random architectures at {args.resolution}x{args.resolution}, 1 thread, CPU time")
    print(f"space.cost            {cost:12,.0f} archs/s  (target >= 10,000)")
    print(f"space.cost (mmcv)     {mmcv:12,.0f} archs/s")
    print(f"space.cost_breakdown  {breakdown:12,.0f} archs/s")
    print(f"build + count model   {counted:12,.2f} archs/s  ({args.counted} archs)")
    print(f"analytic / counted    {cost / counted:12,.0f}x faster")


if __name__ == "__main__":
    main()
