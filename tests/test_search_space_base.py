import random

import pytest

from search_spaces import Block, Dimension, InvalidArchitecture, SearchSpace, get_space, stepped


@pytest.fixture
def toy():
    return SearchSpace(
        "toy",
        [
            Block("cnn", (Dimension("width", stepped(16, 40, 8)), Dimension("kernel", (3, 5)))),
            Block("vit", (Dimension("ratio", stepped(1.6, 2.4, 0.2)),)),
        ],
    )


def test_stepped_matches_the_papers_tuples():
    assert stepped(16, 40, 8) == (16, 24, 32, 40)
    assert stepped(2, 12, 2) == (2, 4, 6, 8, 10, 12)
    assert stepped(1.6, 2.4, 0.2) == (1.6, 1.8, 2.0, 2.2, 2.4)


def test_cardinality_and_blocks(toy):
    assert toy.cardinality == 4 * 2 * 5
    assert toy.block_names == ("cnn", "vit")
    assert toy.block_of("ratio") == "vit"


def test_validate_names_the_field_and_allowed_values(toy):
    with pytest.raises(InvalidArchitecture, match=r"'width'.*20.*\[16, 24, 32, 40\]"):
        toy.validate({"width": 20, "kernel": 3, "ratio": 2.0})
    with pytest.raises(InvalidArchitecture, match="missing.*ratio"):
        toy.validate({"width": 16, "kernel": 3})
    with pytest.raises(InvalidArchitecture, match="unknown.*depth"):
        toy.validate({"width": 16, "kernel": 3, "ratio": 2.0, "depth": 1})


def test_validate_normalises_numpy_and_float_drift(toy):
    import numpy as np

    arch = toy.validate({"width": np.int64(24), "kernel": 5, "ratio": 1.6 + 0.2 + 1e-12})
    assert arch == {"width": 24, "kernel": 5, "ratio": 1.8}
    assert type(arch["width"]) is int


def test_validate_rejects_bools_and_returns_the_choices_objects():
    space = SearchSpace("depths", [Block("b", (Dimension("depth", (1, 2)), Dimension("ratio", (1.6, 2.0))))])
    with pytest.raises(InvalidArchitecture, match=r"'depth'.*True.*\[1, 2\]"):
        space.validate({"depth": True, "ratio": 2.0})  # True == 1, but a bool is no depth
    arch = space.validate({"depth": 2.0, "ratio": 2})
    assert arch == {"depth": 2, "ratio": 2.0} and type(arch["depth"]) is int and type(arch["ratio"]) is float
    with pytest.raises(InvalidArchitecture, match="'ratio'.*allowed values"):
        space.validate({"depth": 1, "ratio": [2.0]})  # unhashable: the full check names the field


def test_arch_id_is_stable_and_order_free(toy):
    a = {"width": 24, "kernel": 5, "ratio": 1.8}
    b = {"ratio": 1.8, "kernel": 5, "width": 24}
    assert toy.arch_id(a) == toy.arch_id(b)
    assert toy.arch_id(a) != toy.arch_id(a | {"kernel": 3})
    assert len(toy.arch_id(a)) == 16


def test_sample_mutate_and_neighbours_stay_in_the_space(toy):
    rng = random.Random(0)
    base = toy.sample(rng)
    toy.validate(base)
    only_vit = toy.sample(rng, block="vit", base=base)
    assert {k: only_vit[k] for k in ("width", "kernel")} == {k: base[k] for k in ("width", "kernel")}
    for _ in range(50):
        child = toy.mutate(base, rng, block="cnn")
        diff = [k for k in base if base[k] != child[k]]
        assert len(diff) == 1 and diff[0] in ("width", "kernel")
    neigh = list(toy.neighbours({"width": 16, "kernel": 3, "ratio": 2.0}))
    assert {"width": 24, "kernel": 3, "ratio": 2.0} in neigh
    assert {"width": 16, "kernel": 5, "ratio": 2.0} in neigh
    assert {"width": 16, "kernel": 3, "ratio": 1.8} in neigh
    assert len(neigh) == 4


def test_tune_param_space_round_trips(toy):
    from ray.tune.search.sample import Categorical

    space = toy.to_tune()
    assert set(space) == {"width", "kernel", "ratio"}
    assert all(isinstance(v, Categorical) for v in space.values())
    rng = random.Random(1)
    sampled = {k: rng.choice(v.categories) for k, v in space.items()}
    assert toy.from_config(sampled | {"unrelated": 1}) == toy.validate(sampled)


def test_unknown_space_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown search space 'nope'.*efficient_topformer"):
        get_space("nope")
