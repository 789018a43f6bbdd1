"""``python -m raynas inspect``: one architecture's cost, id and place in its search space.

    python -m raynas inspect --space efficient_topformer --arch topformer-b --resolution 512 --num-classes 150 --json

``--arch`` takes ``min``, ``max``, ``random`` (with ``--seed``), a space's named
architectures (efficient_topformer: ``topformer-t/s/b``, the published
references) or a JSON file (an architecture dict, or an object with ``"arch"``,
e.g. this command's own JSON output). Params and FLOPs come from the space's
analytic cost model and, for spaces that build networks, from counting a real
model (``search_spaces.flop_counter``). ``--convention`` picks the FLOPs unit:
``macs`` (multiply-accumulates, what the search uses) or ``mmcv`` (mmcv's
``get_flops``, the convention of TopFormer's published figures).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from raynas.errors import check_choice, check_positive
from search_spaces import SPACE_NAMES, get_space
from search_spaces.base import FLOP_CONVENTIONS, SearchSpace, WeightSharingSpace
from search_spaces.flop_counter import count

NAME = "inspect"
HELP = "Show an architecture's params and FLOPs (analytic and counted), its id and the space's cardinality."


def _resolution(text: str) -> tuple[int, int]:
    """``512`` or ``HxW`` (e.g. ``360x480``) as (height, width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) <= 0:
        raise argparse.ArgumentTypeError(f"resolution {text!r} must be a positive size (512) or HxW (360x480)")
    return (parts[0], parts[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="efficient_topformer", help=f"search space, one of {list(SPACE_NAMES)}")
    parser.add_argument("--arch", default="max", help="min, max, random, a named architecture (topformer-t/s/b) or a JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed for --arch random")
    parser.add_argument("--resolution", type=_resolution, default=(512, 512), help="input size: 512 or HxW")
    parser.add_argument("--num-classes", type=int, default=150, help="segmentation classes (150: ADE20K)")
    parser.add_argument("--convention", choices=FLOP_CONVENTIONS, default="macs",
                        help="FLOPs unit: macs (multiply-accumulates, default) or mmcv (mmcv's get_flops, "
                             "as TopFormer published: + BatchNorm, activation and bias elements)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def describe(
    space: SearchSpace, name: str, seed: int, resolution: tuple[int, int], num_classes: int, convention: str = "macs"
) -> dict[str, Any]:
    """Everything ``inspect`` prints, as a JSON-able dict (FLOPs in ``convention``)."""
    check_positive("--num-classes", num_classes)
    check_choice("--convention", convention, FLOP_CONVENTIONS)
    arch = space.arch_from_name(name, seed=seed)
    out: dict[str, Any] = {
        "space": space.name,
        "cardinality": space.cardinality,
        "name": name,
        "arch_id": space.arch_id(arch),
        "arch": arch,
        "in_space": True,
        "resolution": list(resolution),
        "num_classes": num_classes,
        "convention": convention,
    }
    if not isinstance(space, WeightSharingSpace):  # e.g. nb201: no networks, maybe no cost model
        try:
            out |= space.cost(arch)
        except NotImplementedError:
            pass
        return out
    cost = space.cost(arch, resolution, num_classes, convention)
    if name in space.REFERENCE_NAMES:  # a published model, e.g. topformer-b
        out["in_space"] = space.reference_in_space(name)
        out["published"] = space.published(name)
        out["nearest"] = cost  # the cost of ``arch``, the nearest architecture in the space
        cost = space.reference_cost(name, resolution, num_classes, convention)
        model = space.reference_model(name, num_classes)
    else:
        model = space.build_model(arch, num_classes)
    counted = count(model, resolution, convention=convention)
    out |= cost | {"params_counted": counted["params"], "flops_counted": counted["flops"]}
    if not out.get("published"):
        out["breakdown"] = space.cost_breakdown(arch, resolution, num_classes, convention)
    return out


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f} {unit}"
    return str(value)


def _table(info: dict[str, Any], space) -> str:
    h, w = info["resolution"]
    lines = [
        f"space          {info['space']} ({info['cardinality']:.3e} architectures)",
        f"architecture   {info['name']}" + ("" if info["in_space"] else " (not in the space; 'arch' is the nearest one)"),
        f"arch id        {info['arch_id']}",
        f"input          {h}x{w}, {info['num_classes']} classes",
    ]
    flops_label = "FLOPs (MACs)" if info["convention"] == "macs" else "FLOPs (mmcv)"
    for key, label in (("params", "params"), ("flops", flops_label)):
        if key in info:
            extra = [f"counted {_si(info[key + '_counted'])}"] if key + "_counted" in info else []
            if "published" in info:
                extra.append(f"published {_si(info['published'][key])}")
            if "nearest" in info:
                extra.append(f"nearest in space {_si(info['nearest'][key])}")
            lines.append(f"{label:<15}{_si(info[key])}" + (f"  ({'; '.join(extra)})" if extra else ""))
    if "breakdown" in info:
        lines.append("per part       " + "  ".join(f"{p}: {_si(c['flops'])}" for p, c in info["breakdown"].items()))
    for block in space.blocks:
        lines.append(f"{block.name + ':':<15}" + " ".join(f"{d.name}={info['arch'][d.name]}" for d in block.dimensions))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    info = describe(space, args.arch, args.seed, args.resolution, args.num_classes, args.convention)
    print(json.dumps(info, indent=2) if args.json else _table(info, space))
    return 0
