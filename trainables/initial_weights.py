"""Where a supernet's weights start: the ``init`` setting of supernet training and of ImageNet pre-training.

``init`` is one of

- ``"imagenet"`` (the default): the space's ImageNet weights shipped offline
  (``WeightSharingSpace.inherit_imagenet``; for ``efficient_topformer``
  EfficientNet-Lite0's, mapped onto the token pyramid);
- ``"random"``: the layers' own initialisation;
- a ``raynas pretrain`` checkpoint (its folder, ``pretrain.pt`` or its run
  directory: the latest): the parts of the supernet that ImageNet
  pre-training trained (``TRAINED_PARTS`` of the space's classifier).

``check_init`` validates a value on the driver before anything starts (one
clear error naming the setting); ``apply_init`` fills a freshly built model
and returns the record that checkpoints keep (``meta["init"]``): what the
value was, where the weights came from, and the fraction of each part's
parameters they filled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from raynas.errors import UserError

PRETRAIN_FILE = "pretrain.pt"
NAMED = ("imagenet", "random")


def check_init(init: str, space, field: str = "init") -> dict[str, Any]:
    """The record ``apply_init`` will return for ``init`` (a dry run on a fresh supernet); a ``UserError``
    naming ``field`` when the value cannot be used with ``space``."""
    if not isinstance(init, str) or not init:
        raise UserError(f"{field}: expected 'imagenet', 'random' or a `raynas pretrain` checkpoint; got {init!r}")
    return apply_init(space.build_supernet(num_classes=1), init, space, field)


def apply_init(supernet: torch.nn.Module, init: str, space, field: str = "init") -> dict[str, Any]:
    """Fill ``supernet`` (or a classifier's ``.supernet``) from ``init``; the record of where its weights came from."""
    if init == "random":
        return {"init": "random", "source": "random initialisation", "inherited": {}}
    if init == "imagenet":  # a space without ImageNet weights raises, naming the setting and the allowed values
        inherited = space.inherit_imagenet(supernet)
        return {"init": "imagenet", "source": space.IMAGENET_SOURCE, "inherited": inherited}
    return _load_pretrained(supernet, init, space, field)


def _load_pretrained(supernet: torch.nn.Module, path: str, space, field: str) -> dict[str, Any]:
    from trainables.checkpoints import checkpoint_dir, read_meta

    try:
        directory = checkpoint_dir(path, PRETRAIN_FILE)
    except UserError:
        raise UserError(f"{field}: {path!r} is neither 'imagenet', 'random' nor a `raynas pretrain` checkpoint "
                        f"(a folder holding {PRETRAIN_FILE}, that file, or its run directory)") from None
    meta = read_meta(directory, PRETRAIN_FILE)
    if meta.get("space") != space.name:
        raise UserError(f"{field}: {directory} was pre-trained for space {meta.get('space')!r}, not {space.name!r}")
    state = torch.load(directory / PRETRAIN_FILE, map_location="cpu", weights_only=True)["model"]
    ours = supernet.state_dict()
    parts = tuple(f"{p}." for p in meta["trained_parts"])
    taken = {}
    for key, value in state.items():
        name = key.removeprefix("supernet.")
        if not name.startswith(parts):
            continue
        if name not in ours or ours[name].shape != value.shape:
            got = None if name not in ours else tuple(ours[name].shape)
            raise UserError(f"{field}: {directory} does not fit this supernet: its {name} is "
                            f"{tuple(value.shape)}, here {got} (pre-trained with space_options "
                            f"{meta.get('space_options')}, another width of the space)")
        taken[name] = value
    supernet.load_state_dict(taken, strict=False)
    total = {p: sum(v.numel() for k, v in ours.items() if k.startswith(p)) for p in parts}
    filled = {p: sum(v.numel() for k, v in taken.items() if k.startswith(p)) for p in parts}
    last = meta["history"][-1] if meta.get("history") else {}
    return {"init": str(directory), "inherited": {p[:-1]: filled[p] / max(total[p], 1) for p in parts},
            "source": f"raynas pretrain {Path(directory)} (epoch {meta.get('epoch')}, started from "
                      f"{meta.get('init', {}).get('source', '?')}; val top-1 of the max sub-network "
                      f"{last.get('val_top1_max', float('nan')):.3f})"}


def describe(record: dict[str, Any]) -> str:
    """One line: where the weights came from and what share of which parts."""
    inherited = record.get("inherited") or {}
    if not inherited:
        return record["source"]
    parts = ", ".join(f"{part} {share:.0%}" for part, share in inherited.items())
    return f"{record['source']}; inherited share of the parameters: {parts}"
