"""Search spaces as data: dimensions grouped into ordered coordinate blocks.

Everything a searcher needs comes from one description — the Ray Tune param
space, sampling, mutation, neighbourhoods, a stable architecture id and
validation — so searchers never know which space they search.

An architecture is a plain dict ``{dimension name: value}`` with flat keys;
it is JSON-serialisable and round-trips through Tune's ``config/...`` columns
and Parquet (numpy scalars and float drift are normalised by ``validate``).

Two contracts: ``SearchSpace`` (every space) and ``WeightSharingSpace`` (a
space with networks: an elastic supernet, static models, a cost model at a
resolution, named reference models, depth dimensions). A new space subclasses
one of them and registers its factory in ``search_spaces._REGISTRY``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from raynas.errors import UserError

Arch = dict[str, Any]

# How FLOPs are counted (``search_spaces.flop_counter`` describes both): multiply-accumulates,
# or mmcv's get_flops (+ BatchNorm, activation and bias elements; TopFormer's published figures).
FLOP_CONVENTIONS = ("macs", "mmcv")


class InvalidArchitecture(UserError):
    """An architecture dict does not fit its search space."""


def stepped(low: float, high: float, step: float) -> tuple:
    """The choices ``(low, high, step)`` of the papers' tables, both ends included."""
    count = int(round((high - low) / step)) + 1
    values = [low + i * step for i in range(count)]
    if all(float(v).is_integer() for v in (low, high, step)):
        return tuple(int(v) for v in values)
    return tuple(round(v, 6) for v in values)


@dataclass(frozen=True)
class Dimension:
    """One searchable choice with ordered values (order defines neighbours)."""

    name: str
    choices: tuple

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"dimension {self.name!r} needs at least two choices, got {self.choices!r}")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"dimension {self.name!r} has repeated choices {self.choices!r}")

    def canonical(self, value: Any) -> Any:
        """The choice equal to ``value`` (numpy scalars, float drift allowed) or raise."""
        for choice in self.choices:
            if isinstance(choice, str) or isinstance(value, str):
                if value == choice:
                    return choice
            elif isinstance(value, (bool,)) or value is None:
                continue
            else:
                try:
                    if math.isclose(float(value), float(choice), rel_tol=1e-9, abs_tol=1e-9):
                        return choice
                except (TypeError, ValueError):
                    continue
        raise InvalidArchitecture(
            f"architecture field {self.name!r} has value {value!r}; allowed values: {list(self.choices)}"
        )

    def index(self, value: Any) -> int:
        return self.choices.index(self.canonical(value))


@dataclass(frozen=True)
class Block:
    """An ordered group of dimensions optimised together (one coordinate of CDS)."""

    name: str
    dimensions: tuple[Dimension, ...]


class SearchSpace:
    """Dimensions grouped in ordered coordinate blocks; subclasses add a cost model.

    What callers rely on:

    - ``name``, ``blocks`` (ordered coordinate blocks), ``dimensions``, ``block_names``,
      ``block(name)``, ``dimension(name)``, ``block_of(dimension)``, ``cardinality``;
    - ``to_tune()``: the Ray Tune param space (one ``tune.choice`` per dimension);
    - ``validate(arch)``: the canonical architecture, or an ``InvalidArchitecture``
      naming the field and its allowed values; ``from_config(config)`` reads one out
      of a Tune trial config;
    - ``arch_id(arch)``: a stable id; ``min_arch()``, ``max_arch()``,
      ``arch_from_name(name)`` (``ARCH_NAMES`` and JSON files);
    - ``sample(rng, block, base)``, ``mutate(arch, rng, block)``, ``neighbours(arch, block)``;
    - ``cost(arch)``: the analytic costs a constraint can bound (e.g. ``params``,
      ``flops``); a space without a cost model raises ``NotImplementedError``.

    Pickling keeps only the description, so a searcher's saved state restores
    in a later version of raynas.

    >>> space = SearchSpace("toy", [Block("a", (Dimension("w", (8, 16)),)),
    ...                             Block("b", (Dimension("k", (3, 5)),))])
    >>> space.validate({"w": 16, "k": 3})
    {'w': 16, 'k': 3}
    """

    name: str = "space"

    _DERIVED = ("dimensions", "_by_name", "_block_of", "_exact")

    def __init__(self, name: str, blocks: Sequence[Block]):
        self.name = name
        self.blocks = tuple(blocks)
        self._derive()
        if len(self._by_name) != len(self.dimensions):
            raise ValueError(f"space {name!r} repeats a dimension name")

    def _derive(self) -> None:
        """Look-up tables computed from the blocks (rebuilt, not pickled)."""
        self.dimensions = tuple(d for b in self.blocks for d in b.dimensions)
        self._by_name = {d.name: d for d in self.dimensions}
        self._block_of = {d.name: b.name for b in self.blocks for d in b.dimensions}
        # value -> choice per dimension: equal values hash alike (16.0, numpy.int64(16) find 16)
        self._exact = {d.name: {c: c for c in d.choices} for d in self.dimensions}

    def __getstate__(self) -> dict:
        # a searcher's saved state holds its space: keep only the description, so state saved
        # by one version of raynas restores in the next
        return {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._derive()

    # --- description -----------------------------------------------------
    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise UserError(f"space {self.name!r} has no coordinate block {name!r}; blocks: {list(self.block_names)}")

    def dimension(self, name: str) -> Dimension:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidArchitecture(
                f"space {self.name!r} has no dimension {name!r}; dimensions: {list(self._by_name)}"
            ) from None

    def block_of(self, dimension_name: str) -> str:
        return self._block_of[dimension_name]

    @property
    def cardinality(self) -> int:
        return math.prod(len(d.choices) for d in self.dimensions)

    def to_tune(self) -> dict:
        """A Ray Tune param space with one ``tune.choice`` per dimension (flat keys)."""
        from ray import tune

        return {d.name: tune.choice(list(d.choices)) for d in self.dimensions}

    # --- architectures ---------------------------------------------------
    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Return the canonical architecture dict or raise naming the bad field.

        Fast path (cost models check thousands of architectures per second): every
        value equal to a choice is a dictionary lookup; anything else (float drift,
        bools, unhashable or missing values, unknown fields) takes the full check.
        """
        if isinstance(arch, Mapping) and len(arch) == len(self._exact):
            try:
                canon = {}
                for name, choices in self._exact.items():
                    value = arch[name]
                    if value.__class__ is bool:  # a bool is never a valid value (Dimension.canonical)
                        break
                    canon[name] = choices[value]
                else:
                    return canon
            except (KeyError, TypeError):
                pass
        if not isinstance(arch, Mapping):
            raise InvalidArchitecture(f"an architecture must be a mapping of dimension names to values, got {type(arch).__name__}")
        unknown = sorted(set(arch) - set(self._by_name))
        if unknown:
            raise InvalidArchitecture(
                f"unknown architecture field(s) {unknown} for space {self.name!r}; fields: {list(self._by_name)}"
            )
        missing = [d.name for d in self.dimensions if d.name not in arch]
        if missing:
            raise InvalidArchitecture(f"architecture for space {self.name!r} is missing field(s) {missing}")
        return {d.name: d.canonical(arch[d.name]) for d in self.dimensions}

    def from_config(self, config: Mapping[str, Any]) -> Arch:
        """The architecture inside a Tune trial config (extra keys are ignored)."""
        return self.validate({d.name: config[d.name] for d in self.dimensions if d.name in config})

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        """A stable 16-hex-digit id: same architecture, same id, on any machine."""
        canon = self.validate(arch)
        payload = json.dumps([self.name, [[k, canon[k]] for k in sorted(canon)]], separators=(",", ":"))
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def min_arch(self) -> Arch:
        return {d.name: d.choices[0] for d in self.dimensions}

    def max_arch(self) -> Arch:
        return {d.name: d.choices[-1] for d in self.dimensions}

    ARCH_NAMES = ("min", "max", "random")

    def arch_from_name(self, name: str, seed: int | None = None) -> Arch:
        """``min``, ``max``, ``random`` (with ``seed``) or a path to a JSON architecture
        (a dict, or an object with an ``"arch"`` dict); spaces may add named architectures."""
        if name == "min":
            return self.min_arch()
        if name == "max":
            return self.max_arch()
        if name == "random":
            return self.sample(random.Random(seed))
        path = Path(name)
        if not path.is_file():
            raise UserError(f"architecture {name!r} is neither a name ({list(self.ARCH_NAMES)}) nor an existing JSON file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"architecture file {name}: not valid JSON ({err})") from None
        if isinstance(data, dict) and isinstance(data.get("arch"), dict):
            data = data["arch"]
        return self.validate(data)

    def _dims(self, block: str | None) -> tuple[Dimension, ...]:
        return self.dimensions if block is None else self.block(block).dimensions

    def sample(self, rng: random.Random, block: str | None = None, base: Mapping[str, Any] | None = None) -> Arch:
        """Uniform sample; with ``block``, resample only that block of ``base``."""
        arch = dict(self.validate(base)) if base is not None else {}
        for d in self._dims(block) if base is not None else self.dimensions:
            arch[d.name] = rng.choice(d.choices)
        return arch

    def mutate(self, arch: Mapping[str, Any], rng: random.Random, block: str | None = None) -> Arch:
        """Change one dimension (of ``block``, if given) to a different value."""
        child = dict(self.validate(arch))
        dim = rng.choice(self._dims(block))
        child[dim.name] = rng.choice([c for c in dim.choices if c != child[dim.name]])
        return child

    def neighbours(self, arch: Mapping[str, Any], block: str | None = None) -> Iterator[Arch]:
        """Architectures one step up or down one ordered dimension (of ``block``)."""
        canon = self.validate(arch)
        for d in self._dims(block):
            i = d.index(canon[d.name])
            for j in (i - 1, i + 1):
                if 0 <= j < len(d.choices):
                    yield canon | {d.name: d.choices[j]}

    # --- cost --------------------------------------------------------------
    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Analytic cost of an architecture (e.g. params, flops); per space."""
        raise NotImplementedError(f"space {self.name!r} has no analytic cost model")


class WeightSharingSpace(SearchSpace):
    """A search space with networks, searched with inherited weights (e.g. Efficient-TopFormer).

    Beyond ``SearchSpace``, a subclass provides:

    - ``build_supernet(num_classes)``: the elastic supernet holding the largest
      weights; it has ``set_active(arch)`` (what the next forward computes) and
      ``extract(arch)`` (a static ``nn.Module`` with the active weights and the same outputs);
    - ``build_model(arch, num_classes)``: a freshly initialised static network;
    - ``cost(arch, resolution, num_classes, convention)`` and ``cost_breakdown(...)``
      (per part): analytic ``params`` and ``flops`` at an input size, FLOPs counted
      in one of ``FLOP_CONVENTIONS``; ``search_spaces.flop_counter`` counts a real
      model the same way;
    - ``depth_dimensions``: the names of the dimensions that count layers;
    - ``build_classifier(num_classes)``: for ImageNet pre-training (``raynas pretrain``), a module
      holding a supernet (``.supernet``) with a classification head, ``set_active(arch)`` and
      ``(N, classes)`` logits; ``TRAINED_PARTS`` names the supernet's children it trains;
    - ``IMAGENET_SOURCE`` and ``inherit_imagenet(supernet)``: ImageNet weights shipped offline, copied
      into a supernet (the fraction of each part's parameters filled); ``IMAGENET_SOURCE`` None: none;
    - ``REFERENCE_NAMES``: published models expressible in its layers (may be
      empty), with ``reference_model(name, num_classes)``, ``reference_cost(name,
      resolution, num_classes, convention)``, ``published(name)`` (the paper's
      ``params``/``flops``) and ``reference_in_space(name)``; ``arch_from_name``
      maps a reference name to its nearest architecture of the space.
    """

    REFERENCE_NAMES: tuple[str, ...] = ()
    IMAGENET_SOURCE: str | None = None

    @property
    def depth_dimensions(self) -> tuple[str, ...]:
        raise NotImplementedError

    def cost(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = 512, num_classes: int = 150,
             convention: str = "macs") -> dict[str, float]:
        """Total ``params`` and ``flops`` of ``arch`` at ``resolution`` (analytic: no model is built)."""
        raise NotImplementedError

    def cost_breakdown(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = 512,
                       num_classes: int = 150, convention: str = "macs") -> dict[str, dict[str, float]]:
        """``{part: {"params", "flops"}}``; the parts sum to ``cost``."""
        raise NotImplementedError

    def build_supernet(self, num_classes: int):
        raise NotImplementedError

    def build_model(self, arch: Mapping[str, Any], num_classes: int = 150):
        raise NotImplementedError

    def build_classifier(self, num_classes: int):
        raise UserError(f"space {self.name!r} has no ImageNet classifier to pre-train")

    def inherit_imagenet(self, supernet) -> dict[str, float]:
        raise UserError(f"init: space {self.name!r} ships no ImageNet weights; allowed values: 'random' "
                        f"or a `raynas pretrain` checkpoint")

    def reference_model(self, name: str, num_classes: int = 150):
        raise UserError(f"space {self.name!r} has no reference models")

    def reference_cost(self, name: str, resolution: int | tuple[int, int] = 512, num_classes: int = 150,
                       convention: str = "macs") -> dict[str, float]:
        raise UserError(f"space {self.name!r} has no reference models")

    def published(self, name: str) -> dict[str, float]:
        raise UserError(f"space {self.name!r} has no reference models")

    def reference_in_space(self, name: str) -> bool:
        raise UserError(f"space {self.name!r} has no reference models")
