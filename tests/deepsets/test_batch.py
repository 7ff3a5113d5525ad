"""The data contract: constructors, validation, slicing, concatenation, device moves."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.batch import FeatureBatch, ModalityTensors


def history() -> ModalityTensors:
    # The docs/design.md example: [7, 3, 9], missing, [4]
    return ModalityTensors.from_lengths(torch.tensor([7, 3, 9, 4]), torch.tensor([3, 0, 1]))


def test_from_lengths_matches_design_example():
    h = history()
    assert h.offsets.tolist() == [0, 3, 3, 4]
    assert h.present.tolist() == [True, False, True]
    assert h.row(0).tolist() == [7, 3, 9] and h.row(1).tolist() == [] and h.row(2).tolist() == [4]
    assert h.lengths().tolist() == [3, 0, 1]
    h.validate("history")


def test_from_offsets_equals_from_lengths():
    a = ModalityTensors.from_offsets(torch.tensor([7, 3, 9, 4]), torch.tensor([0, 3, 3, 4]))
    b = history()
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.present, b.present)


@pytest.mark.parametrize(
    "values, offsets, present, message",
    [
        (torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([True]), "end at len"),
        (torch.tensor([1, 2]), torch.tensor([0, 2, 1, 2]), torch.tensor([True, True, True]), "decrease at row 1"),
        (
            torch.tensor([1, 2]),
            torch.tensor([0, 2, 2]),
            torch.tensor([True, True]),
            "row 1 is marked present but has no elements",
        ),
        (
            torch.tensor([1, 2]),
            torch.tensor([0, 2, 2]),
            torch.tensor([False, False]),
            "row 0 is marked missing but has 2",
        ),
        (torch.tensor([1, 2]), torch.tensor([0, 2]), torch.tensor([True, True]), "offsets must have shape"),
    ],
)
def test_validate_names_the_broken_invariant(values, offsets, present, message):
    with pytest.raises(ValueError, match=message):
        ModalityTensors(values, present, offsets).validate("m")


def test_fixed_modality_validation():
    ok = ModalityTensors.fixed(torch.zeros(3, 4), torch.tensor([True, False, True]))
    ok.validate()
    with pytest.raises(ValueError, match="values has 2 rows but present has 3"):
        ModalityTensors.fixed(torch.zeros(2, 4), torch.tensor([True, False, True])).validate()
    with pytest.raises(ValueError, match="observed"):
        ModalityTensors.fixed(
            torch.zeros(3, 4), torch.ones(3, dtype=torch.bool), torch.ones(3, 2, dtype=torch.bool)
        ).validate()


def _batch(lengths, dense_rows, ids) -> FeatureBatch:
    lengths = torch.tensor(lengths, dtype=torch.int64)
    values = torch.arange(int(lengths.sum()))
    return FeatureBatch(
        modalities={
            "seq": ModalityTensors.from_lengths(values, lengths),
            "vec": ModalityTensors.fixed(
                torch.tensor(dense_rows, dtype=torch.float32), torch.ones(len(dense_rows), dtype=torch.bool)
            ),
        },
        num_rows=len(dense_rows),
        labels={"y": torch.arange(len(dense_rows), dtype=torch.float32)},
        ids=np.asarray(ids),
    )


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 5), min_size=1, max_size=12), cut=st.integers(0, 12))
def test_slice_then_concat_is_identity(lengths, cut):
    n = len(lengths)
    batch = _batch(lengths, [[float(i)] for i in range(n)], [f"r{i}" for i in range(n)])
    cut = min(cut, n)
    again = FeatureBatch.concat([batch.slice(0, cut), batch.slice(cut, n)])
    again.validate()
    assert again.num_rows == n and list(again.ids) == list(batch.ids)
    for i in range(n):
        assert again["seq"].row(i).tolist() == batch["seq"].row(i).tolist()
    assert torch.equal(again["vec"].values, batch["vec"].values)
    assert torch.equal(again.labels["y"], batch.labels["y"])


def test_slice_rebases_offsets():
    part = _batch([2, 0, 3], [[0.0], [1.0], [2.0]], [10, 11, 12]).slice(1, 3)
    assert part["seq"].offsets.tolist() == [0, 0, 3]
    assert part["seq"].values.tolist() == [2, 3, 4]
    assert part.ids.tolist() == [11, 12]


def test_to_and_pin_memory_keep_values():
    batch = _batch([1, 2], [[1.0], [2.0]], [1, 2])
    moved = batch.to("cpu").pin_memory()
    assert torch.equal(moved["seq"].values, batch["seq"].values)
    assert moved.ids is batch.ids


def test_names_are_sorted():
    batch = _batch([1, 0], [[1.0], [2.0]], [1, 2])
    assert batch.names == ["seq", "vec"]
    assert [batch[n].present.tolist() for n in batch.names] == [[True, False], [True, True]]


def test_validate_catches_row_count_mismatch():
    batch = _batch([1, 2], [[1.0], [2.0]], [1, 2])
    batch.labels["y"] = torch.zeros(3)
    with pytest.raises(ValueError, match="label y: 3 rows, batch has 2"):
        batch.validate()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), rows=st.lists(st.integers(0, 11), max_size=20))
def test_take_equals_the_rows_one_by_one(seed, rows):
    from tests.deepsets.random_batches import random_batch

    batch = random_batch(12, seed=seed, presence=0.6, max_len=5)
    batch.ids = np.arange(12) * 10
    taken = batch.take(torch.tensor(rows, dtype=torch.int64))
    taken.validate()
    assert taken.num_rows == len(rows) and taken.ids.tolist() == [r * 10 for r in rows]
    for name in batch.names:
        for i, r in enumerate(rows):
            assert torch.equal(taken[name].row(i), batch[name].row(r)) and bool(taken[name].present[i]) == bool(
                batch[name].present[r]
            )
        if batch[name].observed is not None:
            assert torch.equal(taken[name].observed, batch[name].observed[rows])
