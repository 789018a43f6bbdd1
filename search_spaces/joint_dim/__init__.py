"""Joint-dimensional search (seed paper 004): the space, its static network and its relaxed supernet."""

from search_spaces.joint_dim.space import JointDimSpace, make_space

__all__ = ["JointDimSpace", "make_space"]
