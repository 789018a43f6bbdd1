"""HR-NAS (seed paper 001): the multi-branch space with lightweight Transformers, its elastic supernet and cost."""

from search_spaces.hr_nas.space import HRNASSpace, make_space

__all__ = ["HRNASSpace", "make_space"]
