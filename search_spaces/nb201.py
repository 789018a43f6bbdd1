"""NAS-Bench-201 (Dong & Yang, ICLR 2020): the cell space and its tabular benchmark.

The cell has 4 nodes; each of its 6 edges ``j -> i`` (``j < i``) carries one of
5 operations. Coordinate blocks are the edges grouped by destination node:
``node1`` (1 edge), ``node2`` (2 edges), ``node3`` (3 edges).

An architecture round-trips to the benchmark's string form
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``:

>>> space = make_space()
>>> s = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
>>> to_arch_string(from_arch_string(s)) == s
True
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from raynas.errors import UserError
from search_spaces.base import Arch, Block, Dimension, InvalidArchitecture, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = (1, 2, 3)
_OP = "(" + "|".join(OPS) + ")"
CANONICAL = "^" + r"\+".join(r"\|" + r"\|".join(f"{_OP}~{src}" for src in range(dst)) + r"\|" for dst in NODES) + "$"


def edge_name(dst: int, src: int) -> str:
    return f"edge_{dst}_{src}"


def make_space() -> SearchSpace:
    """The NB201 cell: 6 edges x 5 ops in blocks node1/node2/node3 (15,625 cells)."""
    blocks = [
        Block(f"node{dst}", tuple(Dimension(edge_name(dst, src), OPS) for src in range(dst)))
        for dst in NODES
    ]
    return SearchSpace("nb201", blocks)


def to_arch_string(arch: Mapping[str, Any]) -> str:
    """The NAS-Bench-201 string of an architecture dict."""
    return "+".join(
        "|" + "|".join(f"{arch[edge_name(dst, src)]}~{src}" for src in range(dst)) + "|" for dst in NODES
    )


def from_arch_string(text: str) -> Arch:
    """The architecture dict of a NAS-Bench-201 string (clear error when malformed)."""
    nodes = text.strip().split("+")
    if len(nodes) != len(NODES):
        raise InvalidArchitecture(f"NB201 string {text!r} must have {len(NODES)} '+'-separated nodes")
    arch: Arch = {}
    for dst, node in zip(NODES, nodes):
        edges = [e for e in node.strip("|").split("|") if e]
        if len(edges) != dst:
            raise InvalidArchitecture(f"NB201 string {text!r}: node {dst} needs {dst} edges, got {edges}")
        for src, edge in enumerate(edges):
            op, _, got_src = edge.partition("~")
            if got_src != str(src) or op not in OPS:
                raise InvalidArchitecture(
                    f"NB201 string {text!r}: edge {edge!r} must be 'OP~{src}' with OP in {list(OPS)}"
                )
            arch[edge_name(dst, src)] = op
    return arch


class TabularBenchmark:
    """A table of NB201 cells with an accuracy and a latency column, looked up by architecture.

    ``path`` is a Parquet or CSV file holding an ``arch`` column (NB201 strings)
    and the named accuracy and latency columns. Pickles as its settings only
    (Ray ships it to workers cheaply) and reloads the table from disk, cached.
    """

    ARCH_COLUMN = "arch"

    def __init__(self, path: str | Path, accuracy_column: str, latency_column: str | None = None):
        self.path = str(Path(path).expanduser().resolve())
        self.accuracy_column = accuracy_column
        self.latency_column = latency_column
        self.space = make_space()
        self._rows = _load_rows(self.path, accuracy_column, latency_column)

    def __reduce__(self):
        return (TabularBenchmark, (self.path, self.accuracy_column, self.latency_column))

    @property
    def settings(self) -> dict:
        return {"table": self.path, "accuracy_column": self.accuracy_column, "latency_column": self.latency_column}

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``{"accuracy": …, "latency_ms": …}`` of an architecture (latency only with a latency column)."""
        key = to_arch_string(self.space.validate(arch))
        try:
            return dict(self._rows[key])
        except KeyError:
            raise UserError(f"architecture {key} is not in the table {self.path}") from None

    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """The constraint-relevant costs of an architecture (its latency)."""
        row = self.lookup(arch)
        return {"latency_ms": row["latency_ms"]} if "latency_ms" in row else {}

    def rows(self) -> list[tuple[Arch, dict[str, float]]]:
        """Every (architecture, metrics) pair of the table."""
        return [(from_arch_string(key), dict(value)) for key, value in self._rows.items()]


@lru_cache(maxsize=4)
def _load_rows(path: str, accuracy_column: str, latency_column: str | None) -> dict[str, dict[str, float]]:
    import pyarrow.csv
    import pyarrow.parquet

    file = Path(path)
    if not file.is_file():
        raise UserError(f"table: file {path!r} does not exist (a Parquet or CSV NAS-Bench-201 table)")
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        table = pyarrow.parquet.read_table(file)
    elif suffix == ".csv":
        table = pyarrow.csv.read_csv(file)
    else:
        raise UserError(f"table: {path!r} must end in .parquet or .csv")
    wanted = {"arch column": TabularBenchmark.ARCH_COLUMN, "accuracy column": accuracy_column}
    if latency_column is not None:
        wanted["latency column"] = latency_column
    for field, column in wanted.items():
        if column not in table.column_names:
            raise UserError(f"{field}: {column!r} is not a column of {path}; columns present: {table.column_names}")
    import pyarrow.compute as pc

    arch_column = table.column(TabularBenchmark.ARCH_COLUMN)
    canonical = pc.all(pc.match_substring_regex(arch_column, CANONICAL)).as_py()
    archs = arch_column.to_pylist()
    if not canonical:  # normalise (and check) each string; canonical ones are keys as they are
        archs = [to_arch_string(from_arch_string(text)) for text in archs]
    accuracy = table.column(accuracy_column).to_pylist()
    latency = table.column(latency_column).to_pylist() if latency_column else [None] * len(archs)
    if latency_column:
        return {key: {"accuracy": float(acc), "latency_ms": float(lat)} for key, acc, lat in zip(archs, accuracy, latency)}
    return {key: {"accuracy": float(acc)} for key, acc in zip(archs, accuracy)}
