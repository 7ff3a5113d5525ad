"""Fragments cover every row of every file exactly once, in order, and read back those rows."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet
from deepsets.features.fragments import Fragment, decode_rows, plan_fragments, plan_runs, read_fragment, read_run


def write(path, row_groups):
    """A file whose ``x`` column counts rows 0..n-1, in row groups of the given sizes."""
    start = 0
    schema = pa.schema([("x", pa.int64()), ("v", pa.list_(pa.float32(), 2))])
    with pq.ParquetWriter(path, schema) as writer:
        for n in row_groups:
            x = np.arange(start, start + n)
            v = pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(x, 2).astype(np.float32)), 2)
            writer.write_table(pa.table({"x": x, "v": v}, schema=schema))
            start += n
    return str(path)


@settings(max_examples=40, deadline=None)
@given(
    layouts=st.lists(st.lists(st.integers(0, 40), min_size=0, max_size=5), min_size=1, max_size=3),
    target=st.integers(1, 50),
    read_rows=st.integers(1, 17),
)
def test_fragments_cover_each_row_once_and_read_back_in_order(tmp_path_factory, layouts, target, read_rows):
    tmp = tmp_path_factory.mktemp("frag")
    files = [write(tmp / f"f{i}.parquet", groups) for i, groups in enumerate(layouts)]
    fragments = plan_fragments(files, target)
    for file_index, (path, groups) in enumerate(zip(files, layouts)):
        mine = [f for f in fragments if f.path == path]
        assert all(f.file_index == file_index for f in mine)
        assert [f.index for f in mine] == list(range(len(mine)))  # names are unique per file
        assert mine[0].start == 0 and mine[-1].stop == sum(groups)
        assert all(a.stop == b.start for a, b in zip(mine, mine[1:]))  # contiguous, no overlap
        assert all(f.rows <= target for f in mine)
        read = []
        for f in mine:
            for row_base, table in read_fragment(f, ["x", "v"], read_rows):
                assert table.num_rows <= read_rows
                x = table.column("x").to_numpy()
                assert x.tolist() == list(range(row_base, row_base + table.num_rows))  # row_base is right
                read.extend(x.tolist())
        assert read == list(range(sum(groups)))
    assert len({f.name for f in fragments}) == len(fragments)


def test_whole_row_groups_are_kept_together(tmp_path):
    path = write(tmp_path / "a.parquet", [10, 10, 10, 25, 5])
    spans = [(f.start, f.stop) for f in plan_fragments([path], 20)]
    assert spans == [(0, 20), (20, 30), (30, 50), (50, 55), (55, 60)]  # the 25-row group is split 20 + 5


def test_an_empty_file_gets_one_empty_fragment(tmp_path):
    path = write(tmp_path / "empty.parquet", [])
    assert plan_fragments([path], 10) == [Fragment(path, 0, 0, 0, 0)]
    assert list(read_fragment(Fragment(path, 0, 0, 0, 0), ["x"], 4)) == []


def test_null_fixed_size_list_rows_are_read_through_polars(tmp_path):
    # pyarrow < 26 cannot read a fixed_size_list column with null rows (GH-35692)
    v = pa.array([[1.0, 2.0], None, [3.0, 4.0], None, [5.0, 6.0]], pa.list_(pa.float32(), 2))
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"x": np.arange(5), "v": v}), path, row_group_size=2)
    fragment = plan_fragments([str(path)], 3)[1]  # rows 2..4
    tables = list(read_fragment(fragment, ["x", "v"], 2))
    joined = pa.concat_tables([t for _, t in tables], promote_options="permissive")
    assert joined.column("x").to_pylist() == [2, 3, 4]
    assert [None if r is None else list(r) for r in joined.column("v").to_pylist()] == [[3.0, 4.0], None, [5.0, 6.0]]
    assert [b for b, _ in tables][0] == 2


def test_not_parquet_is_named(tmp_path):
    bad = tmp_path / "notes.parquet"
    bad.write_text("hello")
    with pytest.raises(DataError, match="notes.parquet: not a readable Parquet file"):
        plan_fragments([str(bad)], 10)
    with pytest.raises(ValueError, match="target_rows"):
        plan_fragments([str(bad)], 0)


@settings(max_examples=40, deadline=None)
@given(
    layouts=st.lists(st.lists(st.integers(0, 60), min_size=0, max_size=4), min_size=1, max_size=3),
    target=st.integers(1, 25),
    workers=st.integers(1, 4),
    read_rows=st.integers(1, 17),
    skip=st.sets(st.integers(0, 30), max_size=5),
)
def test_runs_read_each_fragment_once_in_one_pass(tmp_path_factory, layouts, target, workers, read_rows, skip):
    tmp = tmp_path_factory.mktemp("runs")
    files = [write(tmp / f"f{i}.parquet", groups) for i, groups in enumerate(layouts)]
    planned = plan_fragments(files, target)
    todo = [f for i, f in enumerate(planned) if i not in skip]  # as on --resume: some already done
    runs = plan_runs(todo, workers)
    assert [f for run in runs for f in run] == todo  # every fragment once, in order
    for run in runs:
        assert all(a.path == b.path and a.stop == b.start for a, b in zip(run, run[1:]))
        seen = {f.name: [] for f in run}
        for fragment, row_base, table in read_run(run, ["x", "v"], read_rows):
            assert 0 < table.num_rows <= read_rows
            assert (
                fragment.start <= row_base and row_base + table.num_rows <= fragment.stop
            )  # never spans two fragments
            x = table.column("x").to_numpy()
            assert x.tolist() == list(range(row_base, row_base + table.num_rows))
            seen[fragment.name].extend(x.tolist())
        assert all(seen[f.name] == list(range(f.start, f.stop)) for f in run)


def test_a_split_row_group_is_shared_by_at_most_one_run_per_worker(tmp_path):
    path = write(tmp_path / "one.parquet", [10, 100, 10])  # the 100-row group is split in 10
    fragments = plan_fragments([path], 10)
    runs = plan_runs(fragments, workers=3)
    assert [[f.index for f in run] for run in runs] == [[0], [1, 2, 3], [4, 5, 6, 7], [8, 9, 10], [11]]
    assert plan_runs(fragments, workers=1)[1] == fragments[1:11]
    with pytest.raises(ValueError, match="workers"):
        plan_runs(fragments, 0)
    with pytest.raises(ValueError, match="contiguous"):
        list(read_run([fragments[1], fragments[3]], ["x"], 4))


def test_a_run_decodes_its_row_group_once(tmp_path, monkeypatch):
    import deepsets.features.fragments as fragments_module

    path = write(tmp_path / "one.parquet", [200])
    fragments = plan_fragments([path], 20)
    decoded = []
    original = fragments_module.decode_rows

    def counting(*args, **kwargs):
        return original(*args, **kwargs, on_decoded=decoded.append)

    monkeypatch.setattr(fragments_module, "decode_rows", counting)
    runs = plan_runs(fragments, workers=2)
    for run in runs:
        list(read_run(run, ["x"], 10))
    assert sum(decoded) == 200 + 100  # the second run skips the first half; one at a time would decode 1,100


@pytest.mark.parametrize(
    "start, stop, read_rows, most_decoded",
    [
        (0, 130, 4096, 130),  # ends inside the second group: its rest is not decoded
        (150, 170, 4096, 70),  # inside one group: its head (from row 100) is decoded to reach the start
        (0, 250, 64, 252),  # several reads of the last group, sized to end within a few rows of stop
        (40, 300, 7, 300),
    ],
)
def test_a_range_ending_inside_a_row_group_stops_decoding_there(tmp_path, start, stop, read_rows, most_decoded):
    path = write(tmp_path / "groups.parquet", [100, 200])
    decoded = []
    tables = list(
        decode_rows(
            open_parquet(path, pre_buffer=False),
            path,
            ["x"],
            start,
            stop,
            read_rows,
            decoded.append,
            stop_inside_group=True,
        )
    )
    assert np.concatenate([t.column("x").to_numpy() for _, t in tables]).tolist() == list(range(start, stop))
    assert stop - start <= sum(decoded) <= most_decoded
    assert all(t.num_rows <= read_rows for _, t in tables)
