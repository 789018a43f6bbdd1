"""Efficient-TopFormer: the paper's search space, its elastic supernet and the TopFormer references."""

from search_spaces.efficient_topformer.reference import (
    PUBLISHED,
    REFERENCE_NAMES,
    nearest_arch,
    reference_cost,
    reference_model,
    reference_spec,
)
from search_spaces.efficient_topformer.space import EfficientTopFormerSpace, make_space

__all__ = [
    "EfficientTopFormerSpace",
    "make_space",
    "PUBLISHED",
    "REFERENCE_NAMES",
    "nearest_arch",
    "reference_cost",
    "reference_model",
    "reference_spec",
]
