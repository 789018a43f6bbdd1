"""mIoU of the min and max sub-networks with and without BN recalibration, per checkpoint of a run.

Without recalibration a sub-network uses the supernet's running statistics,
which blend every sub-network trained in the sandwich (and trail the
weights); with it, its own statistics on ``--calibration`` training images
(paper: 32) spread over the split, as raynas takes them, or the first ones
of the list ("front"; CamVid's are all dusk frames of one drive). All on
the validation images the supernet was trained with (or ``--val`` of them,
spread over the split), one torch thread.

    python benchmarks/bn_recalibration.py ~/raynas_results/camvid_cpu
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a training run directory (its checkpoint_epoch_NNNN folders)")
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--val", type=int, default=None, help="validation images (default: all)")
    args = parser.parse_args()

    import torch

    from raynas.data import EvalTransform
    from search_spaces import get_space
    from trainables.checkpoints import CHECKPOINT_PREFIX, load_supernet
    from trainables.recalibration import batches_of, evaluate_arch
    from trainables.subnet_evaluation import SubnetEvaluation, cached_batches

    torch.set_num_threads(1)
    columns = [f"{arch}, {how}" for arch in ("min", "max") for how in ("spread", "front", "no recal")]
    checkpoints = sorted(Path(args.run_dir).expanduser().glob(f"{CHECKPOINT_PREFIX}*"))
    if not checkpoints:
        raise SystemExit(f"run_dir: {args.run_dir} holds no {CHECKPOINT_PREFIX}NNNN/ checkpoints (a train-supernet run)")
    print(f"{'checkpoint':>22} {'step':>5} {'loss_max':>8} " + " ".join(f"{c:>14}" for c in columns))
    for checkpoint in checkpoints:
        supernet, meta = load_supernet(checkpoint)
        space = get_space(meta["space"], **meta["space_options"])
        settings = SubnetEvaluation(val_images=args.val, calibration_images=args.calibration)
        calibration, val = cached_batches(settings, meta, "train"), cached_batches(settings, meta, "val")
        data = settings.data(meta)
        train = data.make("train", EvalTransform(data.eval_size))
        front = batches_of(train, range(min(args.calibration, len(train))), settings.batch_size)
        row = []
        for arch in (space.min_arch(), space.max_arch()):
            for batches in (calibration, front, []):
                metric, _, _ = evaluate_arch(supernet, arch, batches, val, meta["num_classes"], meta["ignore_index"])
                row.append(metric.compute()["miou"])
        print(f"{checkpoint.name:>22} {meta['step']:>5} {meta['history'][-1]['loss_max']:8.3f} "
              + " ".join(f"{v:14.3f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
