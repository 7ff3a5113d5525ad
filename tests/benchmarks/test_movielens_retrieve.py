"""The pairs `benchmarks.movielens.retrieve` excludes: the user's earlier movies, never the held-out one."""

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.movielens.retrieve import seen_pairs


def test_seen_pairs_are_the_earlier_splits_history_without_the_target(tmp_path):
    pq.write_table(pa.table({"user_id": [1, 1, 2, 3], "movie_id": [10, 11, 10, 12]}), tmp_path / "train.parquet")
    pq.write_table(
        pa.table({"event_id": [50, 51], "user_id": [1, 2], "movie_id": [13, 14]}), tmp_path / "valid.parquet"
    )
    pq.write_table(
        pa.table({"event_id": [91, 90, 92], "user_id": [2, 1, 4], "movie_id": [10, 15, 16]}), tmp_path / "test.parquet"
    )
    pairs, events, targets = seen_pairs(tmp_path, "test")
    assert events.tolist() == [90, 91, 92] and targets.tolist() == [15, 10, 16]
    found = sorted(zip(pairs["query_event"].to_pylist(), pairs["movie_id"].to_pylist()))
    # user 1: train 10, 11 and valid 13; user 2: train 10 is its test target (kept out), valid 14; user 4: nothing
    assert found == [(90, 10), (90, 11), (90, 13), (91, 14)]
    valid_pairs, _, _ = seen_pairs(tmp_path, "valid")
    assert sorted(zip(valid_pairs["query_event"].to_pylist(), valid_pairs["movie_id"].to_pylist())) == [
        (50, 10),
        (50, 11),
        (51, 10),
    ]
