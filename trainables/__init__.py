"""What Ray runs, and the objectives a sweep can search.

``OBJECTIVES`` maps a sweep's ``benchmark`` name to its ``Objective`` class
(``trainables.objective``; "module:Class", imported when used). The
supernet's training loop, the sub-network evaluation and the tabular
benchmark live in their own modules here.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from raynas.errors import check_choice
from trainables.objective import Objective

OBJECTIVES = {
    "nb201": "trainables.tabular_benchmark:NB201Objective",
    "supernet": "trainables.subnet_evaluation:SupernetObjective",
    "ssr": "trainables.ssr_search:SSRObjective",
    "shrinking": "trainables.shrinking:ShrinkingObjective",
}


def objective_class(name: str) -> type[Objective]:
    """The ``Objective`` subclass registered as ``name``."""
    module, cls = OBJECTIVES[check_choice("sweep.benchmark", name, OBJECTIVES)].split(":")
    return getattr(importlib.import_module(module), cls)


def make_objective(name: str, fields: Mapping[str, Any], section: str = "sweep") -> Objective:
    """The objective ``name`` built from its fields of the ``sweep`` section (validated)."""
    cls = objective_class(name)
    return cls(cls.Settings.load(fields, section))


__all__ = ["OBJECTIVES", "Objective", "make_objective", "objective_class"]
