"""The NAS-Bench-201 space and its tabular benchmark, on the real table."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from raynas.errors import UserError
from search_spaces import get_space
from search_spaces.base import InvalidArchitecture
from search_spaces.nb201 import OPS, TabularBenchmark, from_arch_string, to_arch_string

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # index 6111


def test_space_is_six_edges_in_three_node_blocks():
    space = get_space("nb201")
    assert space.block_names == ("node1", "node2", "node3")
    assert [len(space.block(b).dimensions) for b in space.block_names] == [1, 2, 3]
    assert all(d.choices == OPS for d in space.dimensions)
    assert space.cardinality == 5 ** 6 == 15_625


def test_every_table_string_round_trips_to_a_distinct_architecture(nb201_table):
    space = get_space("nb201")
    strings = pq.read_table(nb201_table, columns=["arch"]).column("arch").to_pylist()
    archs = [from_arch_string(s) for s in strings]
    assert [to_arch_string(a) for a in archs] == strings
    assert len({space.arch_id(a) for a in archs}) == 15_625


@pytest.mark.parametrize("bad", ["|none~0|+|none~0|none~1|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                 "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_malformed_strings_are_rejected(bad):
    with pytest.raises(InvalidArchitecture):
        from_arch_string(bad)


def test_lookup_finds_the_documented_best_and_its_latency(nb201_table):
    bench = TabularBenchmark(nb201_table, "cifar10_test_acc", "lat_raspi4_ms")
    row = bench.lookup(from_arch_string(BEST))
    assert row["accuracy"] == pytest.approx(94.37333, abs=1e-4)  # README: best 94.373 (index 6111)
    assert max(r["accuracy"] for _, r in bench.rows()) == row["accuracy"]
    assert bench.cost(from_arch_string(BEST)) == {"latency_ms": row["latency_ms"]}
    assert len(bench) == 15_625


def test_csv_and_parquet_give_the_same_rows(nb201_table):
    csv = nb201_table.with_suffix(".csv")
    a = TabularBenchmark(nb201_table, "cifar10_test_acc", "lat_gold_6226_ms")
    b = TabularBenchmark(csv, "cifar10_test_acc", "lat_gold_6226_ms")
    arch = from_arch_string(BEST)
    assert a.lookup(arch) == pytest.approx(b.lookup(arch))


def test_missing_table_and_column_errors_are_clear(nb201_table, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        TabularBenchmark(tmp_path / "nope.parquet", "cifar10_test_acc")
    with pytest.raises(UserError, match=r"accuracy column: 'top1' is not a column .*columns present: \['index', 'arch'"):
        TabularBenchmark(nb201_table, "top1")
    with pytest.raises(UserError, match="latency column: 'lat_pixel'"):
        TabularBenchmark(nb201_table, "cifar10_test_acc", "lat_pixel")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(UserError, match=r"\.parquet or \.csv"):
        TabularBenchmark(tmp_path / "t.json", "cifar10_test_acc")
