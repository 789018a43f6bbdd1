"""Search spaces: one module per space, looked up by name with ``get_space``."""

from __future__ import annotations

import importlib

from raynas.errors import UserError
from search_spaces.base import Arch, Block, Dimension, InvalidArchitecture, SearchSpace, stepped

# name -> "module:factory"; factories take keyword options and return a SearchSpace.
_REGISTRY = {
    "efficient_topformer": "search_spaces.efficient_topformer:make_space",
    "nb201": "search_spaces.nb201:make_space",
    "joint_dim": "search_spaces.joint_dim:make_space",
    "hr_nas": "search_spaces.hr_nas:make_space",
}

SPACE_NAMES = tuple(_REGISTRY)


def get_space(name: str, **options) -> SearchSpace:
    """The search space called ``name``, built with ``options``."""
    if name not in _REGISTRY:
        raise UserError(f"unknown search space {name!r}; allowed values: {list(SPACE_NAMES)}")
    module, factory = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), factory)(**options)


__all__ = ["Arch", "Block", "Dimension", "InvalidArchitecture", "SearchSpace", "stepped", "get_space", "SPACE_NAMES"]
