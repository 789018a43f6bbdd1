"""Supernet checkpoints on disk: where they are, what they hold, and loading one.

A checkpoint is a folder ``checkpoint_epoch_NNNN/`` of a training run holding
``supernet.pt`` (model, optimizer, scheduler state) and ``meta.json`` (epoch,
step, per-epoch metrics, the space and class count that rebuild the
supernet, the training config). Every function that takes a checkpoint
accepts the folder, its ``supernet.pt`` or a run directory (its latest one).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch

from raynas.errors import UserError

CHECKPOINT_FILE = "supernet.pt"
META_FILE = "meta.json"
CHECKPOINT_PREFIX = "checkpoint_epoch_"


def latest_checkpoint(run_dir: str | Path, state_file: str = CHECKPOINT_FILE,
                      prefix: str = CHECKPOINT_PREFIX) -> Path | None:
    """The newest ``<prefix>NNNN`` folder (holding ``state_file``) of a run directory, or None."""
    found = sorted(Path(run_dir).glob(f"{prefix}*/{state_file}"))
    return found[-1].parent if found else None


def checkpoint_dir(path: str | Path, state_file: str = CHECKPOINT_FILE) -> Path:
    """A checkpoint folder from a checkpoint folder, its ``state_file`` or a run directory."""
    path = Path(path).expanduser().resolve()
    if path.is_file() and path.name == state_file:
        return path.parent
    if (path / state_file).is_file():
        return path
    latest = latest_checkpoint(path, state_file) if path.is_dir() else None
    if latest is None:
        what = "supernet checkpoint" if state_file == CHECKPOINT_FILE else "checkpoint"
        raise UserError(f"{what} {str(path)!r}: expected a folder holding {state_file}, "
                        f"that file, or a run directory with {CHECKPOINT_PREFIX}NNNN/ folders")
    return latest


def read_meta(checkpoint_path: str | Path, state_file: str = CHECKPOINT_FILE) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint (folder, its ``state_file`` or a run directory: latest).

    A supernet's: ``space``, ``space_options``, ``num_classes``, ``ignore_index``,
    ``epoch``, ``step``, ``history`` (per-epoch metrics), the training ``config``, ``init`` (where
    its weights started, ``trainables.initial_weights``), ``normalization`` (the input's mean and std) and ``teacher``:
    whether its largest sub-network was trained as a network of its own and can be distilled from
    (a sandwich-rule supernet: yes; the weights of a search that trains: no; absent: yes).
    """
    return json.loads((checkpoint_dir(checkpoint_path, state_file) / META_FILE).read_text())


def trained_class_weights(meta: dict[str, Any]) -> str:
    """The class weighting of the cross-entropy a checkpoint's supernet trained with (``training.class_weights``;
    "none" for the weights of a search that trains, and for checkpoints older than the setting)."""
    return meta["config"].get("training", {}).get("class_weights", "none")


def load_supernet(checkpoint_path: str | Path, map_location: str = "cpu"):
    """``(supernet in eval mode, meta)`` from a checkpoint (folder, its ``supernet.pt`` or a run directory)."""
    from search_spaces import get_space

    directory = checkpoint_dir(checkpoint_path)
    meta = read_meta(directory)
    state = torch.load(directory / CHECKPOINT_FILE, map_location=map_location, weights_only=True)
    supernet = get_space(meta["space"], **meta["space_options"]).build_supernet(meta["num_classes"])
    supernet.load_state_dict(state["model"])
    return supernet.eval(), meta


def write_checkpoint(directory: str | Path, state: dict[str, Any], meta: dict[str, Any],
                     state_file: str = CHECKPOINT_FILE) -> None:
    """Write ``state_file`` (``state``: model, optimizer, scheduler; ``supernet.pt`` by default) and
    ``meta.json`` into ``directory``."""
    torch.save(state, Path(directory) / state_file)
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=1))


@contextlib.contextmanager
def resumed_checkpoint(config: dict):
    """Inside a Ray Train worker: the folder of the run's own checkpoint (Ray Train restoring it), else of
    ``config["resume_from"]``; None to start fresh."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint(config["resume_from"])
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield Path(directory)


def load_training_state(directory: str | Path, model: torch.nn.Module, optimizer, scheduler,
                        state_file: str = CHECKPOINT_FILE) -> dict[str, Any]:
    """Load a checkpoint folder's ``state_file`` into ``model``, ``optimizer`` and ``scheduler`` (the optimizer's
    state goes where its parameters are now: build it after the model is placed, ``training_state``); its meta."""
    state = torch.load(Path(directory) / state_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return read_meta(directory, state_file)
