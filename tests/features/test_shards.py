"""Sharding an epoch's rows over N workers: every row read once, by one worker, equal shares."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import parse_schema
from deepsets.features.shards import epoch_units, shard
from deepsets.features.spec import FeatureSpec

SCHEMA = {
    "id_column": "rid",
    "modality": [{"name": "img", "kind": "dense", "dim": 2, "encoding": "none"}],
}  # raw values: rows are checked by value

unit_sizes = st.lists(st.integers(0, 40), min_size=1, max_size=12)


def units_of(sizes):
    return [(f"f{i}", 5, 5 + n) for i, n in enumerate(sizes)]  # file-relative ranges that do not start at 0


def rows_of(ranges):
    return [(path, row) for path, start, stop in ranges for row in range(start, stop)]


@settings(max_examples=200, deadline=None)
@given(sizes=unit_sizes, world=st.integers(1, 6))
def test_unequal_shares_cover_every_row_once_in_order(sizes, world):
    units = units_of(sizes)
    shares = [shard(units, rank, world, equal=False) for rank in range(world)]
    assert all(left_out == 0 for _, left_out in shares)
    assert sum((rows_of(ranges) for ranges, _ in shares), []) == rows_of(units)  # contiguous, in order, once
    sizes_per_rank = [len(rows_of(ranges)) for ranges, _ in shares]
    assert max(sizes_per_rank) - min(sizes_per_rank) <= 1


@settings(max_examples=200, deadline=None)
@given(sizes=unit_sizes, world=st.integers(1, 6))
def test_equal_shares_have_the_same_rows_and_count_what_they_leave_out(sizes, world):
    units = units_of(sizes)
    total = sum(sizes)
    shares = [shard(units, rank, world, equal=True) for rank in range(world)]
    assert [len(rows_of(ranges)) for ranges, _ in shares] == [total // world] * world
    assert [left_out for _, left_out in shares] == [total % world] + [0] * (world - 1)
    read = sum((rows_of(ranges) for ranges, _ in shares), [])
    assert len(set(read)) == len(read) and set(read) == set(
        rows_of(units)[: len(read)]
    )  # the rows left out are the sequence's last


@settings(max_examples=200, deadline=None)
@given(sizes=unit_sizes, world=st.integers(2, 6))
def test_a_unit_two_equal_shares_cut_is_entered_by_its_smaller_piece(sizes, world):
    """The share taking a unit's tail decodes the unit's head to reach it: that head is at
    most half the unit whenever only two shares cut it."""
    units = units_of(sizes)
    size = sum(sizes) // world
    for rank in range(world):
        for path, lo, hi in shard(units, rank, world, equal=True)[0]:
            start, stop = next((s, e) for p, s, e in units if p == path)
            if stop - start <= size and lo > start:  # a unit no bigger than a share: cut at most once
                assert lo - start <= (stop - start) // 2
                assert hi == stop  # the tail piece runs to the unit's end


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        shard(units_of([3]), 2, 2, equal=True)


def write_row_groups(path, start, sizes):
    n = sum(sizes)
    table = pa.table(
        {
            "rid": pa.array(range(start, start + n), pa.int64()),
            "img": pa.array([[float(i), 0.0] for i in range(start, start + n)], pa.list_(pa.float32())),
        }
    )
    with pq.ParquetWriter(path, table.schema) as writer:
        offset = 0
        for size in sizes:
            writer.write_table(table.slice(offset, size))
            offset += size
    return str(path)


@pytest.fixture
def files(tmp_path):
    return [
        write_row_groups(tmp_path / "a.parquet", 0, [10, 10, 10]),
        write_row_groups(tmp_path / "b.parquet", 30, [10, 10, 3]),
    ]


def test_shuffled_units_are_every_row_group_in_a_seeded_order(files):
    units = epoch_units(files, np.random.default_rng(4))
    assert sorted(units) == sorted(
        [
            (files[0], 0, 10),
            (files[0], 10, 20),
            (files[0], 20, 30),
            (files[1], 0, 10),
            (files[1], 10, 20),
            (files[1], 20, 23),
        ]
    )
    assert units == epoch_units(files, np.random.default_rng(4))
    assert epoch_units(files, None) == [(files[0], 0, 30), (files[1], 0, 23)]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sharded_readers_read_every_row_once_and_their_own_values(files, world):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), files)
    ids, dropped, decoded = [], 0, 0
    for rank in range(world):
        reader = ParquetBatchReader(
            spec, files, batch_size=4, read_rows=6, drop_last=True, shuffle_seed=9, shard=(rank, world)
        )
        batches = list(reader)
        for batch in batches:
            assert batch["img"].values[:, 0].tolist() == [float(i) for i in batch.ids]  # each row keeps its values
        assert len(batches) == (53 // world) // 4  # every rank takes the same steps
        ids += [int(i) for b in batches for i in b.ids]
        dropped, decoded = dropped + reader.rows_dropped, decoded + reader.rows_decoded
    assert len(ids) == len(set(ids)) and len(ids) + dropped == 53  # each row once, the rest counted
    assert 53 - dropped <= decoded <= 53 + 10 * (world - 1)  # a share starting inside a row group decodes its head


def test_validation_shares_use_every_row(files):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), files)
    ids = [
        int(i)
        for rank in range(3)
        for b in ParquetBatchReader(spec, files, batch_size=7, shard=(rank, 3), equal_shards=False)
        for i in b.ids
    ]
    assert ids == list(range(53))
