"""Time to evaluate one sub-network with inherited weights, and how it splits.

Scores the min, max and ``--archs`` random sub-networks of a trained supernet
as a sweep trial does (``score_subnet``: BN recalibration on
``--calibration`` training images, mIoU on ``--val`` validation images) in
one process, on one torch thread. The first call also loads the checkpoint
and decodes the images (an actor's one-off cost, reported apart); the
following calls are what each further trial on a reused actor costs.

    python benchmarks/subnet_eval_time.py --checkpoint ~/raynas_results/quickstart_supernet
"""

from __future__ import annotations

import argparse
import random
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or training run directory")
    parser.add_argument("--archs", type=int, default=8, help="random sub-networks besides min and max")
    parser.add_argument("--calibration", type=int, default=32, help="BN recalibration images (paper: 32)")
    parser.add_argument("--val", type=int, default=None, help="validation images (default: all)")
    args = parser.parse_args()

    import torch

    from search_spaces import get_space
    from trainables.checkpoints import checkpoint_dir
    from trainables.subnet_evaluation import SubnetEvaluation, cached_supernet, score_subnet

    torch.set_num_threads(1)
    checkpoint = str(checkpoint_dir(args.checkpoint))
    evaluation = SubnetEvaluation(calibration_images=args.calibration, val_images=args.val, device="cpu")
    started = time.perf_counter()
    _, meta = cached_supernet(checkpoint)
    space = get_space(meta["space"], **meta["space_options"])
    load_s = time.perf_counter() - started

    rng = random.Random(0)
    archs = [("min", space.min_arch()), ("max", space.max_arch())]
    archs += [(f"random{i}", space.sample(rng)) for i in range(args.archs)]
    first = score_subnet(archs[0][1], checkpoint, evaluation)  # decodes the calibration and validation images
    rows = [score_subnet(arch, checkpoint, evaluation) | {"name": name} for name, arch in archs]
    data = meta["config"]["data"]
    print(f"supernet {args.checkpoint} (epoch {meta['epoch']}), {data['dataset']} at base_size={data['base_size']} "
          f"eval_size={data['eval_size']}; {args.calibration} calibration images, "
          f"{args.val or 'all'} validation images; 1 thread")
    print(f"once per actor: load checkpoint {load_s:.2f} s, decode images "
          f"{first['overhead_s']:.2f} s (first trial overhead)")
    print(f"{'arch':>9} {'GMACs@512':>10} {'mIoU':>6} {'recal s':>8} {'infer s':>8} {'overhead s':>10} {'total s':>8}")
    for r in rows:
        print(f"{r['name']:>9} {r['flops'] / 1e9:10.2f} {r['miou']:6.3f} {r['recalibration_s']:8.3f} "
              f"{r['inference_s']:8.3f} {r['overhead_s']:10.4f} {r['eval_s']:8.3f}")
    for key in ("recalibration_s", "inference_s", "overhead_s", "eval_s"):
        values = [r[key] for r in rows]
        print(f"mean {key}: {statistics.mean(values):.3f} s "
              f"({statistics.mean(values) / statistics.mean(r['eval_s'] for r in rows):.1%} of a trial)")


if __name__ == "__main__":
    main()
