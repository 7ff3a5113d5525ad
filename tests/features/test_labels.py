"""Label and key columns to tensors: exact values, clear errors."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from deepsets.features.errors import DataError
from deepsets.features.labels import key_tensor, label_tensor


def test_scalar_and_list_labels():
    assert label_tensor(pa.array([0, 1, 1], pa.int8()), "y").tolist() == [0.0, 1.0, 1.0]
    assert label_tensor(pa.array([True, False]), "y").dtype == torch.float32
    chunked = pa.chunked_array([pa.array([[1, 0]]), pa.array([[0, 1], [1, 1]])])
    assert label_tensor(chunked, "labels").tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize(
    "arr, message",
    [
        (pa.array([1.0, None, 0.0]), r"column 'y', row 1: null label"),
        (pa.array([1.0, float("nan"), float("inf")]), r"column 'y', rows 1..2 \(2 rows\): NaN or infinite label"),
        (
            pa.array([None, 1.0, float("nan"), None]),
            r"column 'y', rows 0..3 \(3 rows\): null label in 2 row\(s\) and NaN or infinite label in 1 row\(s\) \(every labelled row needs a finite value\)",
        ),
        (pa.array(["a", "b"]), r"column 'y': labels must be numeric, found string"),
        (pa.array([[1, 0], [1], None]), r"column 'y', rows 1..2 \(2 rows\): label lists must all hold 2 numbers"),
        (pa.array([[1, None]]), r"column 'y', row 0: null label"),
    ],
)
def test_bad_labels_name_the_rows(arr, message):
    with pytest.raises(DataError, match=message):
        label_tensor(arr, "y")


def test_keys_are_exact_int64():
    big = 2**53 + 1  # not representable as a float64
    keys = key_tensor(pa.chunked_array([pa.array([big, 3], pa.int64()), pa.array([7], pa.int64())]), "query_id")
    assert keys.dtype == torch.int64 and keys.tolist() == [big, 3, 7]
    assert key_tensor(pa.array([255], pa.uint8()), "query_id").tolist() == [255]
    with pytest.raises(DataError, match=r"column 'query_id', row 1: null id"):
        key_tensor(pa.array([1, None]), "query_id")
    with pytest.raises(DataError, match=r"column 'query_id': must hold integer ids .*found double"):
        key_tensor(pa.array([1.0, 2.0]), "query_id")
