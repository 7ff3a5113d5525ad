"""`deepsets init`'s rules, one small Parquet table per rule: which kind each column becomes,
with which settings, and what is left out."""

from __future__ import annotations

import tomllib
from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features.errors import DataError
from deepsets.features.schema import load_schema
from deepsets.pipelines.init import profile as profile_module
from deepsets.pipelines.init.config import InitConfig
from deepsets.pipelines.init.job import infer_choices, run_init
from deepsets.pipelines.init.leaks import LEAK_WORDS, guess_task, name_leak
from deepsets.pipelines.init.profile import profile_table
from deepsets.pipelines.init.rules import max_len_setting, min_count_for

N = 400


def write(folder, columns: dict, name="part-0.parquet", row_group_size=128):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def with_label(columns: dict, seed=0) -> dict:
    return {**columns, "y": np.random.default_rng(seed).integers(0, 2, N).astype(np.int8)}


def choices_of(path, label="y", id_column=None):
    return {c.column: c for c in infer_choices(profile_table([str(path)], label=label), label, id_column)}


def test_fixed_length_float_lists_are_dense_with_their_length(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N, 6)).astype(np.float32)
    path = write(
        tmp_path,
        with_label(
            {
                "photo": pa.array(
                    [v.tolist() if i % 5 else None for i, v in enumerate(vectors)], pa.list_(pa.float32())
                ),
                "fixed": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 6),
            }
        ),
    )
    found = choices_of(path)
    for column in ("photo", "fixed"):
        assert found[column].kind == "dense" and dict((k, v) for k, v, _ in found[column].settings) == {"dim": 6}


def test_variable_length_float_lists_are_scalar_sequences_with_a_p95_max_len(tmp_path):
    lengths = np.arange(N) % 100 + 1  # 1..100, four rows each
    path = write(tmp_path, with_label({"durations": pa.array([[0.5] * n for n in lengths], pa.list_(pa.float64()))}))
    c = choices_of(path)["durations"]
    settings = {k: v for k, v, _ in c.settings}
    assert c.kind == "dense_sequence" and settings == {
        "dim": 1,
        "max_len": 96,  # p95 = 95, rounded up to a multiple of 8
        "positions": "from_end",
        "truncate": "keep_last",
    }
    why = dict((k, w) for k, _, w in c.settings)["max_len"]
    assert (
        "p95 of the lengths is 95" in why and "16 of 400 rows (4.0%) are longer" in why and "keep their last 96" in why
    )


def test_vector_lists_are_dense_sequences_of_the_vector_length(tmp_path):
    frames = [[[float(i), 1.0, 2.0]] * (i % 4 + 1) for i in range(N)]
    path = write(tmp_path, with_label({"frames": pa.array(frames, pa.list_(pa.list_(pa.float32())))}))
    c = choices_of(path)["frames"]
    assert c.kind == "dense_sequence" and {k: v for k, v, _ in c.settings} == {
        "dim": 3,
        "max_len": 4,
        "positions": "from_end",  # read as a history, like an id list
        "truncate": "keep_last",
    }


def test_ragged_vectors_are_refused_naming_the_column_and_rows(tmp_path):
    frames = [[[1.0, 2.0, 3.0]] * 2 for _ in range(N)]
    frames[17] = [[1.0, 2.0, 3.0], [1.0, 2.0]]
    frames[301] = [[1.0]]
    path = write(tmp_path, with_label({"frames": pa.array(frames, pa.list_(pa.list_(pa.float32())))}))
    with pytest.raises(DataError) as err:
        choices_of(path)
    text = str(err.value)
    assert err.value.column == "frames" and err.value.file == str(path) and err.value.rows.tolist() == [17, 301]
    assert (
        "rows 17..301 (2 rows)" in text
        and "797 vector(s) of 3 floats, 1 vector(s) of 1 floats, 1 vector(s) of 2 floats" in text
    )


def test_id_lists_with_repeats_or_long_rows_are_sequences_short_repeat_free_ones_sets(tmp_path):
    rng = np.random.default_rng(1)
    history = [rng.integers(0, 30, size=i % 40 + 1).tolist() for i in range(N)]  # repeats ids
    tags = [rng.choice(["a", "b", "c", "d", "e"], size=i % 4, replace=False).tolist() for i in range(N)]
    path = write(
        tmp_path,
        with_label({"history": pa.array(history, pa.list_(pa.int64())), "tags": pa.array(tags, pa.list_(pa.string()))}),
    )
    found = choices_of(path)
    assert found["history"].kind == "id_sequence" and found["tags"].kind == "id_set"
    assert {k: v for k, v, _ in found["history"].settings} == {
        "max_len": 40
    }  # p95 = 38 -> 40 = the longest: nothing cut
    assert "rows repeat an id" in found["history"].reason and "order kept" in found["history"].reason
    assert {k: v for k, v, _ in found["tags"].settings} == {"max_len": 3}


def test_strings_and_codes_are_categorical_amounts_numeric_in_one_modality(tmp_path, monkeypatch):
    monkeypatch.setattr(profile_module, "COUNT_CAP", 2000)
    rng = np.random.default_rng(2)
    n = 4000
    columns = {
        "country": rng.choice(["fr", "de", "it"], n),
        "shop": [f"s{i % 1800}" for i in range(n)],  # 1,800 values, each 2-3 times: a vocabulary of the repeated ones
        "session": [f"x{i % 3000}" for i in range(n)],  # 3,000 distinct, more than the cap: hashed
        "weekday": rng.integers(0, 7, n),
        "visits": rng.integers(0, 500, n),
        "price": rng.lognormal(size=n),
        "member": rng.random(n) < 0.3,
        "y": rng.integers(0, 2, n),
    }
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    found = choices_of(tmp_path / "t.parquet")
    settings = {c: {k: v for k, v, _ in found[c].settings} for c in found}
    assert found["country"].kind == "categorical" and settings["country"] == {}
    assert found["shop"].kind == "categorical" and settings["shop"] == {
        "min_count": 4
    }  # one per 1,000 of the 4,000 rows
    assert found["session"].kind == "categorical" and settings["session"] == {"hash_buckets": 4096}
    assert found["weekday"].kind == "categorical" and "codes" in found["weekday"].reason
    assert [found[c].kind for c in ("visits", "price", "member")] == ["numeric"] * 3
    written = run_init(InitConfig(inputs=[str(tmp_path / "t.parquet")], label="y", out=str(tmp_path / "cfg")))
    numeric = [m for m in load_schema(written["schema"]).modality if m.kind == "numeric"]
    assert len(numeric) == 1 and numeric[0].columns == ["visits", "price", "member"]


def test_min_count_grows_with_the_table_within_its_bounds():
    assert [min_count_for(rows) for rows in (10, 1999, 4000, 40_000, 10_000_000)] == [2, 2, 4, 40, 50]


def test_a_unique_column_is_the_id_unless_id_names_another(tmp_path):
    rng = np.random.default_rng(3)
    path = write(
        tmp_path,
        with_label(
            {
                "email": [f"u{i}@example.org" for i in range(N)],
                "row": np.arange(N) + 10,
                "amount": rng.normal(size=N),
                "order_id": np.arange(N) * 7,
            }
        ),
    )
    found = choices_of(path)
    assert found["order_id"].role == "id"  # an id-like name first
    assert found["email"].role == "left_out" and found["row"].role == "left_out"
    assert choices_of(path, id_column="email")["email"].role == "id"
    with pytest.raises(DataError, match="--id column missing"):
        choices_of(path, id_column="nope")


def test_the_label_and_leaking_columns_are_left_out_and_a_random_column_is_kept(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, N).astype(np.int8)
    path = write(
        tmp_path,
        {
            "y": y,
            "y_prob": rng.random(N),
            "y_again": y.astype(np.float64),
            "outcome": np.where(y == 1, "won", "lost"),
            "noise": rng.integers(0, 2, N),
            "price": rng.normal(size=N),
        },
    )
    found = choices_of(path)
    assert found["y"].role == "label"
    assert "its name is the label's plus 'prob'" in found["y_prob"].reason and found["y_prob"].role == "left_out"
    assert "equals the label on all 400 sampled rows" in found["y_again"].reason
    assert "one value per label value" in found["outcome"].reason
    assert found["noise"].role == "feature" and found["price"].role == "feature"


def test_a_linear_function_of_a_regression_label_leaks(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.normal(size=N)
    path = write(tmp_path, {"y": y, "y_cents": y * 100 + 3, "x": y + rng.normal(size=N)})
    found = choices_of(path)
    assert "a linear function of the label" in found["y_cents"].reason and found["x"].role == "feature"


@pytest.mark.parametrize(
    "values, task, outputs",
    [
        (np.arange(N) % 2, "binary", 1),
        (np.arange(N) % 2 == 0, "binary", 1),
        (np.arange(N) % 5, "multiclass", 5),
        (np.arange(N) % 2 + 1.0, "multiclass", 3),
        (np.linspace(0, 1, N), "regression", 1),
    ],
)
def test_the_task_is_guessed_from_the_label(tmp_path, values, task, outputs):
    path = write(tmp_path, {"y": values, "x": np.arange(N) * 0.5})
    kind, num_outputs, why = guess_task(profile_table([str(path)], label="y"), "y")
    assert (kind, num_outputs) == (task, outputs), why


def test_a_string_label_is_refused(tmp_path):
    path = write(tmp_path, {"y": ["a", "b"] * (N // 2), "x": np.arange(N) * 0.5})
    with pytest.raises(DataError, match="the label must be a number column"):
        guess_task(profile_table([str(path)], label="y"), "y")


def test_unseen_categories_are_left_out_and_numbers_beyond_training_are_quantile_encoded(tmp_path):
    rng = np.random.default_rng(6)

    def split(n, months, day0):
        return {
            "month": rng.choice(months, n),
            "day": day0 + np.arange(n) // 2,
            "brand": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
        }

    write(tmp_path / "train", split(N, [1, 2, 3, 4], 0))
    write(tmp_path / "valid", split(100, [5], N))
    summary = run_init(
        InitConfig(
            inputs=[str(tmp_path / "train")], label="y", valid=[str(tmp_path / "valid")], out=str(tmp_path / "cfg")
        )
    )
    by_column = {c["column"]: c for c in summary["columns"]}
    assert (
        by_column["month"]["role"] == "left_out"
        and "100% of validation rows hold values never seen in training" in by_column["month"]["reason"]
    )
    assert (
        by_column["day"]["role"] == "feature"
        and "100% of validation rows lie outside training's range" in by_column["day"]["reason"]
    )
    assert by_column["brand"]["role"] == "feature"
    text = (tmp_path / "cfg" / "schema.toml").read_text()
    numbers = next(m for m in load_schema_text(text, tmp_path) if m.kind == "numeric")
    assert numbers.columns == ["day"] and numbers.encodings == {"day": "quantile"}
    uncommented = (
        text.replace("# [[modality]]", "[[modality]]").replace("# name =", "name =").replace("# kind =", "kind =")
    )
    assert {m.name for m in load_schema_text(uncommented, tmp_path)} == {"brand", "month", "numbers"}


def load_schema_text(text, tmp_path):
    (tmp_path / "edited.toml").write_text(text)
    return load_schema(tmp_path / "edited.toml").modality


def test_existing_files_are_not_overwritten_without_overwrite(tmp_path):
    from deepsets.pipelines.errors import JobError

    path = write(tmp_path / "data", with_label({"x": np.arange(N) * 0.5}))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.toml").write_text("mine")
    with pytest.raises(JobError, match="already exist"):
        run_init(InitConfig(inputs=[str(path)], label="y", out=str(tmp_path / "cfg")))
    assert (tmp_path / "cfg" / "run.toml").read_text() == "mine"
    run_init(InitConfig(inputs=[str(path)], label="y", out=str(tmp_path / "cfg"), overwrite=True))
    assert tomllib.loads((tmp_path / "cfg" / "run.toml").read_text())["data"]["train"] == ["../data/part-0.parquet"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=300))
def test_max_len_cuts_at_most_five_percent_of_rows_and_never_exceeds_the_longest(lengths):
    counts = Counter(lengths)
    _, max_len, why = max_len_setting(counts, "ids", "last")
    cut = sum(1 for n in lengths if n > max_len)
    assert max_len <= max(lengths) and cut <= 0.05 * len(lengths)
    assert (cut == 0) == ("nothing is cut" in why)
    assert max_len == max(lengths) or max_len % 8 == 0


@settings(max_examples=60, deadline=None)
@given(
    st.from_regex(r"[a-z]{1,8}(_[a-z]{1,8}){0,2}", fullmatch=True), st.sampled_from(sorted(LEAK_WORDS)), st.booleans()
)
def test_a_label_name_with_a_score_word_is_a_leak_and_the_label_alone_is_not(label, word, before):
    column = f"{word}_{label}" if before else f"{label}_{word}"
    assert name_leak(column, label) is not None
    assert name_leak(label, label) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 60), max_size=50), min_size=1, max_size=8), st.integers(1, 40))
def test_distinct_values_count_exactly_and_keep_counts_up_to_the_cap(batches, cap):
    distinct = profile_module.DistinctValues(cap=cap)
    for batch in batches:
        distinct.add(pl.Series("v", batch, dtype=pl.Int64))
    everything = Counter(v for batch in batches for v in batch)
    assert distinct.count == len(everything)
    assert distinct.counts == (dict(everything) if len(everything) <= cap else None)


def test_column_names_that_are_not_identifiers_get_modality_names_and_keep_their_column(tmp_path):
    rng = np.random.default_rng(7)
    path = write(
        tmp_path / "data",
        with_label(
            {
                "photo vec": pa.array(rng.normal(size=(N, 4)).tolist(), pa.list_(pa.float32())),
                "2nd-brand": rng.choice(["a", "b"], N),
                "unit price": rng.normal(size=N),
            }
        ),
    )
    written = run_init(InitConfig(inputs=[str(path)], label="y", out=str(tmp_path / "cfg")))
    modalities = {m.name: m for m in load_schema(written["schema"]).modality}
    assert modalities["photo_vec"].column == "photo vec" and modalities["c_2nd_brand"].column == "2nd-brand"
    assert modalities["numbers"].columns == ["unit price"]


def test_values_training_refuses_are_warned_about_naming_the_first_row(tmp_path):
    rng = np.random.default_rng(8)
    photo = rng.normal(size=(N, 3)).tolist()
    photo[205][1] = float("nan")
    frames = [[[1.0, 2.0]] * 2 for _ in range(N)]
    frames[301][1] = [1.0, None]
    price = rng.normal(size=N)
    price[9] = np.inf
    path = write(
        tmp_path,
        with_label(
            {
                "photo": pa.array(photo, pa.list_(pa.float32())),
                "frames": pa.array(frames, pa.list_(pa.list_(pa.float32()))),
                "price": price,
                "clean": rng.normal(size=N),
            }
        ),
    )
    found = choices_of(path)
    assert found["photo"].warning.startswith(
        f"1 rows hold NaN, infinite or null floats, which training refuses (first: {path}, row 205)"
    )
    assert f"(first: {path}, row 301)" in found["frames"].warning
    assert found["price"].warning.startswith(
        f"1 rows hold an infinite value, which training refuses (first: {path}, row 9)"
    )
    assert found["clean"].warning == "" and found["price"].kind == "numeric"
