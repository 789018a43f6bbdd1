"""Elastic overhead: an active sub-network inside the supernet vs its extracted static model.

For the min, max and a few random architectures of ``efficient_topformer`` it
times, interleaved side by side in one run, a training step (forward + loss +
backward; no optimizer step) and an inference pass, and prints the ratios
supernet / static (target: training ≤ 1.2x). Also times ``set_active``.
On CPU the clock is the process's CPU time (robust on a machine shared with
other jobs, where wall time swings by 2x); on CUDA wall time after a sync.

    python benchmarks/elastic_overhead.py                      # batch 8, 256x256, 1 thread
    python benchmarks/elastic_overhead.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from search_spaces import get_space


def _timed(fn, device: torch.device) -> float:
    if device.type != "cuda":
        start = time.process_time()
        fn()
        return time.process_time() - start
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _train_step(model, x, target):
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), target).backward()


@torch.no_grad()
def _infer(model, x):
    model.eval()
    model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--random", type=int, default=3, help="random architectures besides min and max")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per model (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    space = get_space("efficient_topformer")
    supernet = space.build_supernet(args.num_classes).to(device)
    rng = random.Random(args.seed)
    archs = [("min", space.min_arch()), ("max", space.max_arch())]
    archs += [(f"random{i}", space.sample(rng)) for i in range(args.random)]
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    target = torch.randint(0, args.num_classes, (args.batch, args.resolution, args.resolution), device=device)

    print(f"device {device} ({torch.get_num_threads()} threads), batch {args.batch}, {args.resolution}x{args.resolution}, "
          f"{args.num_classes} classes, median of {args.repeats} interleaved repeats")
    print("| arch | GMACs/img | train supernet (ms) | train static (ms) | train ratio "
          "| infer supernet (ms) | infer static (ms) | infer ratio | set_active (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    train_ratios = []
    for name, arch in archs:
        set_active = _timed(lambda: supernet.set_active(arch), device)
        static = supernet.extract(arch)
        times = {key: [] for key in ("train_super", "train_static", "infer_super", "infer_static")}
        for rep in range(args.repeats + 1):
            pairs = [("super", supernet), ("static", static)]
            for tag, model in pairs if rep % 2 else pairs[::-1]:  # alternate who goes first
                t_train = _timed(lambda: _train_step(model, x, target), device)
                t_infer = _timed(lambda: _infer(model, x), device)
                if rep:  # the first round warms up
                    times[f"train_{tag}"].append(t_train)
                    times[f"infer_{tag}"].append(t_infer)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        train_ratio = med["train_super"] / med["train_static"]
        train_ratios.append(train_ratio)
        gmacs = space.cost(arch, args.resolution, args.num_classes)["flops"] / 1e9
        print(f"| {name} | {gmacs:.3f} | {med['train_super']:.1f} | {med['train_static']:.1f} | {train_ratio:.3f} "
              f"| {med['infer_super']:.1f} | {med['infer_static']:.1f} | {med['infer_super'] / med['infer_static']:.3f} "
              f"| {set_active * 1e3:.2f} |")
    print(f"worst training ratio {max(train_ratios):.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
