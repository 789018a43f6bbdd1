"""Does the sandwich's max sub-network keep up with the same network trained alone? Variants side by side.

Every variant trains the demo's supernet (``configs/demo.yaml``: CamVid at
96×128, whole images randomly rescaled) for ``--steps`` steps of 8 images in
one process (torch on ``--threads`` threads), the same images in the same
order, AdamW with the config's learning rate, warm-up and poly decay, with
the training code of ``trainables.sandwich`` (``sandwich``,
``sandwich_step``) and ``trainables.training``, the max sub-network on plain
cross-entropy (``--class-weights median_frequency``: the demo's weighting;
the question here, whether the sandwich keeps up, is the same either way);
then scores the max and min
sub-networks on every CamVid validation image after BN recalibration on 32
training images spread over the split, as supernet training does (and the
max sub-network on CamVid's test split: all of it, or ``--test-images``
spread over it).
``--bn-batch 4`` splits each batch of 8 into halves with their own BatchNorm
statistics and sums their gradients: what the demo's two Ray Train workers
of 4 images compute (DDP averages the workers' gradients; AdamW does not see
the factor 2), in one process.

    python benchmarks/sandwich_recipe.py --variants alone,sandwich --init imagenet,random
    python benchmarks/sandwich_recipe.py --variants alone,sandwich,sum,no_kd --init random --bn-batch 4

Variants (``sandwich`` is the config's recipe: max on the labels, 1 random
and the min sub-network distilled from it, the students' losses averaged):

- ``alone``: the max sub-network alone, on the labels;
- ``sum``: the students' losses summed (BigNAS), each weighing as much as the max's;
- ``no_kd``: the students on the labels instead of the max's predictions;
- ``kd_ce``: the students on both (``distill_ce_weight`` 1);
- ``lr_x2`` / ``lr_half``: twice / half the learning rate;
- ``zero_bn``: the last BN of every residual branch (MBConv project, ViT MLP) starts at γ = 0 (BigNAS);
- ``decay_all``: weight decay on BN and biases too (raynas leaves them out, as BigNAS);
- ``max_first``: the max alone for the first half of the steps, then the sandwich (OFA's order).

``--init`` also takes other mappings of EfficientNet-Lite0's weights than
``init: imagenet``'s (``MAPPINGS``), to compare them:

    python benchmarks/sandwich_recipe.py --variants alone --steps 100 \
        --init imagenet,imagenet-unordered,imagenet-inexact,imagenet-naive,random
"""

from __future__ import annotations

import argparse
import json
import os
import time

# --init values beside imagenet and random: Lite0's weights mapped without ordering channels by importance,
# without zeroing the weights from random channels (and extra blocks not made identities), or neither
# (imagenet-112: MBConv-4 from Lite0's blocks 5, 8, 9, through its 112-channel stage, which MBConv-5's first
# block reads in Lite0; block 8 changes width without a residual, MBConv-4's second block has one)
MAPPINGS = {"imagenet-unordered": {"order": False}, "imagenet-inexact": {"exact": False},
            "imagenet-naive": {"exact": False, "order": False},
            "imagenet-112": {"plan": ((0,), (1, 2), (3, 4), (5, 8, 9), (11, 12, 13, 14))}}
VARIANTS = ("alone", "sandwich", "sum", "no_kd", "kd_ce", "lr_x2", "lr_half", "zero_bn", "decay_all", "max_first")


def train(variant: str, init: str, steps: int, seed: int, sections: dict, bn_batch: int = 8,
          class_weights: str = "none", test_images: int | None = None) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from raynas.training_config import SupernetTrainingConfig
    from search_spaces import get_space
    from search_spaces.efficient_topformer.imagenet import inherit_lite0
    from trainables.initial_weights import apply_init
    from trainables.recalibration import batches_of, evaluate_arch, evaluation_batches, spread
    from trainables.sandwich import sandwich, sandwich_step
    from trainables.training import optimizer_and_schedule, warmup_poly

    training = dict(sections["training"], epochs=1, steps_per_epoch=steps, batch_size=8, seed=seed,
                    class_weights=class_weights)
    training |= {"lr_x2": {"lr": 2 * training["lr"]}, "lr_half": {"lr": training["lr"] / 2},
                 "no_kd": {"distill": False}, "kd_ce": {"distill_ce_weight": 1.0},
                 "sum": {"student_weight": 1.0}}.get(variant, {})
    cfg = SupernetTrainingConfig.load({**sections, "init": "random" if init in MAPPINGS else init,
                                       "training": training})
    torch.manual_seed(seed)
    train_set, calibration_set, val_set = cfg.data.build()
    space = get_space(cfg.space, **cfg.space_options)
    supernet = space.build_supernet(train_set.num_classes)
    apply_init(supernet, cfg.init, space)
    if init in MAPPINGS:  # another mapping of Lite0's weights than init: imagenet's
        inherit_lite0(supernet, **MAPPINGS[init])
    if variant == "zero_bn":
        for stage in supernet.stages:
            for block in stage.blocks:
                if block.residual:
                    torch.nn.init.zeros_(block.project.bn.weight)
        for stage in supernet.vit:
            for block in stage.blocks:
                torch.nn.init.zeros_(block.mlp.fc2.bn.weight)
    optimizer, scheduler = optimizer_and_schedule(supernet, cfg.training, steps)
    if variant == "decay_all":
        t = cfg.training
        optimizer = torch.optim.AdamW(supernet.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_poly(
            s, steps, t.warmup_steps, t.warmup_ratio, t.poly_power))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True, generator=generator)
    weight = train_set.class_weights() if class_weights == "median_frequency" else None

    def label_loss(logits, target):
        return torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=train_set.ignore_index)

    batches, started, losses = iter(loader), time.perf_counter(), []
    supernet.train()
    for step in range(steps):
        try:
            image, label = next(batches)
        except StopIteration:
            batches = iter(loader)
            image, label = next(batches)
        optimizer.zero_grad(set_to_none=True)
        alone = variant == "alone" or (variant == "max_first" and step < steps // 2)
        archs = [space.max_arch()] if alone else sandwich(space, step, seed, cfg.training.random_subnets)
        parts = range(0, 8, bn_batch)  # BN statistics per part, gradients summed: DDP over 8 / bn_batch workers
        losses.append(sum(sandwich_step(supernet, supernet, archs, image[part:part + bn_batch],
                                        label[part:part + bn_batch], label_loss, cfg.training)[0]
                          for part in parts) / len(parts))
        optimizer.step()
        scheduler.step()
    train_s = time.perf_counter() - started
    calibration, val = evaluation_batches(calibration_set, val_set, cfg.evaluation)
    test_set = cfg.data.test_set()
    test = batches_of(test_set, spread(len(test_set), test_images), cfg.evaluation.batch_size) \
        if test_set is not None else []
    scores = {}
    for which, arch, batches in (("max", space.max_arch(), val), ("min", space.min_arch(), val),
                                 ("max_test", space.max_arch(), test)):
        metric, _, _ = evaluate_arch(supernet, arch, calibration, batches, train_set.num_classes,
                                     train_set.ignore_index)
        scores[which] = metric.compute()["miou"]
    tail = losses[-max(1, steps // 10):]
    return {"variant": variant, "init": init, "seed": seed, "steps": steps, "bn_batch": bn_batch,
            "class_weights": class_weights,
            "train_s": round(train_s),
            "loss_max_last10pct": sum(tail) / len(tail), "max_miou": scores["max"], "min_miou": scores["min"],
            "max_test_miou": scores["max_test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="alone,sandwich", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--init", default="imagenet",
                        help=f"comma-separated: imagenet, random, {', '.join(MAPPINGS)} (other mappings of Lite0)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bn-batch", type=int, default=8, choices=(1, 2, 4, 8),
                        help="images per BatchNorm batch: 4 is the demo's 2 Ray Train workers × 4 images")
    parser.add_argument("--class-weights", default="none",
                        help="comma-separated: none, median_frequency (the demo's), of the max's cross-entropy")
    parser.add_argument("--val-images", type=int, default=None, help="validation images scoring (default: all)")
    parser.add_argument("--test-images", type=int, default=None, help="test images scoring the max (default: all)")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--data-root", default=None, help="CamVid's folder (default ../shared/data/camvid)")
    parser.add_argument("--out", default=None, help="append each result as a JSON line to this file")
    args = parser.parse_args()

    import torch

    from raynas.commands.demo import choose_data, read_demo_config

    torch.set_num_threads(args.threads)
    sections = read_demo_config(args.config)["supernet"]
    sections["data"] = choose_data(sections["data"], args.data_root, print)
    sections["evaluation"] = {**sections.get("evaluation", {}), "val_images": args.val_images}
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; allowed values: {list(VARIANTS)}")
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, {args.steps} steps of 8 images "
          f"(BatchNorm over {args.bn_batch}), {args.threads} threads")
    print(f"{'init':>18} {'class weights':>16} {'variant':>10} {'seed':>4} {'train s':>7} {'loss_max':>8} "
          f"{'max mIoU':>8} {'min mIoU':>8} {'max test':>8}")
    for init in args.init.split(","):
        for weighting in args.class_weights.split(","):
            for seed in range(args.seeds):
                for variant in variants:
                    row = train(variant, init, args.steps, seed, sections, args.bn_batch, weighting, args.test_images)
                    print(f"{init:>18} {weighting:>16} {variant:>10} {seed:>4} {row['train_s']:>7} "
                          f"{row['loss_max_last10pct']:8.3f} {row['max_miou']:8.4f} {row['min_miou']:8.4f} "
                          f"{row['max_test_miou']:8.4f}", flush=True)
                    if args.out:
                        with open(args.out, "a") as out:
                            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
