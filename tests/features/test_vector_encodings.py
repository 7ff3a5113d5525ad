"""Float vectors (``dense``, ``dense_sequence``) scaled per dimension as fitted: auto's choices,
every encoding through a saved spec, old specs read raw, sequences of scalars (``dim = 1``),
and a property against numpy."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepsets.features import vector_encodings as venc
from deepsets.features.errors import DataError
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.report import format_stats

F32 = pa.list_(pa.float32())


def vectors_column(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """``list<float32>`` rows of ``values`` (R, dim), null where ``missing``."""
    return pa.array([None if m else v.tolist() for v, m in zip(values, missing)], F32)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """``vec``: minutes (log-normal, tails past 1,000), a centred unit-scale dimension, a price
    around 100, a left-skewed score; ``emb``: unit-norm embeddings; 10% of rows missing."""
    rng = np.random.default_rng(0)
    n = 3000
    minutes = rng.lognormal(np.log(30), 1.3, n)
    score = np.where(rng.random(n) < 0.12, rng.integers(0, 10, n), 10).astype(float)
    vec = np.c_[minutes, rng.normal(0, 1, n), rng.normal(100, 20, n), score].astype(np.float32)
    emb = rng.normal(size=(n, 6))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    missing = rng.random(n) < 0.1
    table = pa.table(
        {"vec": vectors_column(vec, missing), "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 6)}
    )
    path = tmp_path_factory.mktemp("vectors") / "mixed.parquet"
    pq.write_table(table, path)
    return path, table, vec, emb, missing


def dense_schema(**fields):
    return parse_schema(
        {"modality": [{"name": "vec", "kind": "dense", "dim": 4, **fields}, {"name": "emb", "kind": "dense", "dim": 6}]}
    )


def test_auto_logs_heavy_tails_standardizes_far_off_dimensions_and_leaves_normalized_ones(mixed):
    path, table, vec, emb, missing = mixed
    assert vec[:, 0].max() > 1000 and np.median(vec[:, 0]) == pytest.approx(30, rel=0.15)
    spec = FeatureSpec.fit(dense_schema(), path)
    fitted = spec.fitted["vec"]
    assert fitted.encodings == ["log1p", "none", "standard", "standard"]
    present = vec[~missing].astype(np.float64)
    logged = np.log1p(present[:, 0])
    assert fitted.mean[0] == pytest.approx(logged.mean()) and fitted.std[0] == pytest.approx(logged.std())
    assert (fitted.mean[1], fitted.std[1]) == (0.0, 1.0)
    assert fitted.mean[2:] == pytest.approx(present[:, 2:].mean(axis=0)) and fitted.std[2:] == pytest.approx(
        present[:, 2:].std(axis=0)
    )
    assert spec.fitted["emb"].encodings == ["none"] * 6 and spec.stats()["emb"]["unit_norm_share"] == pytest.approx(1.0)
    m = spec.transform(table)["vec"]
    expected = np.c_[
        (logged - logged.mean()) / logged.std(),
        present[:, 1],
        (present[:, 2:] - present[:, 2:].mean(axis=0)) / present[:, 2:].std(axis=0),
    ]
    np.testing.assert_allclose(m.values.numpy()[~missing], expected, rtol=1e-4, atol=1e-4)
    assert not m.present.numpy()[missing].any() and (m.values.numpy()[missing] == 0).all()
    torch.testing.assert_close(spec.transform(table)["emb"].values, torch.from_numpy(emb))
    lines = format_stats(spec.stats()).splitlines()
    assert "vec encodings: log1p dim 0, none dim 1, standard dims 2-3" in lines
    assert "emb encodings: none dims 0-5 (unit-norm vectors)" in lines


@pytest.mark.parametrize("encoding", ["standard", "log1p", "none"])
def test_every_encoding_reads_back_from_a_saved_spec_with_missing_rows_kept_missing(mixed, tmp_path, encoding):
    path, table, vec, _, missing = mixed
    spec = FeatureSpec.fit(dense_schema(encoding=encoding), path)
    spec.save(tmp_path / "spec.json")
    again = FeatureSpec.load(tmp_path / "spec.json")
    assert again.fitted["vec"].encodings == [encoding] * 4
    m = again.transform(table)["vec"]
    present = vec[~missing].astype(np.float64)
    symlog = np.sign(present) * np.log1p(np.abs(present))  # log1p mirrored below zero
    scaled = {"standard": present, "log1p": symlog, "none": present}[encoding]
    if encoding != "none":
        scaled = (scaled - scaled.mean(axis=0)) / scaled.std(axis=0)
    np.testing.assert_allclose(m.values.numpy()[~missing], scaled, rtol=1e-4, atol=1e-4)
    assert m.present.numpy().tolist() == (~missing).tolist() and (m.values.numpy()[missing] == 0).all()
    torch.testing.assert_close(m.values, spec.transform(table)["vec"].values)


def test_a_spec_saved_before_vector_encodings_reads_its_vectors_raw(mixed):
    path, table, vec, _, missing = mixed
    data = FeatureSpec.fit(dense_schema(), path).to_dict()
    for name in ("vec", "emb"):  # what specs held before: stats only
        for key in ("encodings", "mean", "std"):
            data["fitted"][name].pop(key)
    for m in data["schema"]["modality"]:
        m.pop("encoding")
    old = FeatureSpec.from_dict(json.loads(json.dumps(data)))
    assert old.schema.modality[0].encoding == "auto"  # the field's default; the fitted state decides
    np.testing.assert_array_equal(old.transform(table)["vec"].values.numpy()[~missing], vec[~missing])


@pytest.fixture(scope="module")
def durations(tmp_path_factory):
    """Per-event durations in minutes as a plain ``list<float>`` and as ``list<int>`` counts."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 7, 2000)  # 0 = empty list = missing
    values = rng.lognormal(np.log(20), 1.4, int(lengths.sum()))
    offsets = np.r_[0, np.cumsum(lengths)]
    rows = [values[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
    rows[3] = None
    table = pa.table(
        {
            "minutes": pa.array(rows, pa.list_(pa.float64())),
            "counts": pa.array([None if r is None else [int(v) for v in r] for r in rows], pa.list_(pa.int32())),
        }
    )
    path = tmp_path_factory.mktemp("durations") / "events.parquet"
    pq.write_table(table, path)
    return path, table, rows


def test_a_plain_list_of_floats_is_a_sequence_of_one_dimensional_vectors(durations, tmp_path):
    path, table, rows = durations
    schema = parse_schema(
        {
            "modality": [
                {"name": "minutes", "kind": "dense_sequence", "dim": 1, "max_len": 4},
                {"name": "counts", "kind": "dense_sequence", "dim": 1, "encoding": "none"},
            ]
        }
    )
    spec = FeatureSpec.fit(schema, path)
    kept = [r[:4] for r in rows if r]
    flat = np.concatenate([np.asarray(r) for r in rows if r])
    assert spec.fitted["minutes"].encodings == ["log1p"]
    assert spec.fitted["minutes"].mean[0] == pytest.approx(np.log1p(flat).mean())  # fitted on every value, cut or not
    stats = spec.stats()["minutes"]
    assert stats["present_rows"] == len(kept) and stats["length_max"] == 6
    assert stats["truncated_rows"] == sum(len(r) > 4 for r in rows if r) > 0
    spec.save(tmp_path / "spec.json")
    batch = FeatureSpec.load(tmp_path / "spec.json").transform(table)
    m = batch["minutes"]
    logged = np.log1p(np.concatenate([np.asarray(r) for r in kept]))
    expected = (logged - np.log1p(flat).mean()) / np.log1p(flat).std()
    assert tuple(m.values.shape) == (len(logged), 1)
    np.testing.assert_allclose(m.values.numpy()[:, 0], expected, rtol=1e-4, atol=1e-4)
    assert np.diff(m.offsets.numpy()).tolist() == [len(r[:4]) if r else 0 for r in rows]
    assert m.present.numpy().tolist() == [bool(r) for r in rows]
    counts = batch["counts"]
    assert counts.values[:, 0].tolist() == [float(int(v)) for r in rows if r for v in r]


def test_a_plain_list_is_refused_for_wider_vectors_and_a_null_value_in_it_is_named(durations, tmp_path):
    path, table, _ = durations
    wide = parse_schema({"modality": [{"name": "minutes", "kind": "dense_sequence", "dim": 2}]})
    with pytest.raises(
        DataError, match=r"expects list<list<float>> or list<fixed_size_list<float, 2>>, found list<element: double>"
    ):
        FeatureSpec.fit(wide, path)
    spec = FeatureSpec.fit(parse_schema({"modality": [{"name": "minutes", "kind": "dense_sequence", "dim": 1}]}), path)
    bad = pa.table({"minutes": pa.array([[1.0], [2.0, None], [3.0]], pa.list_(pa.float64()))})
    with pytest.raises(DataError, match=r"column 'minutes', row 1: null element inside a sequence of scalars") as info:
        spec.transform(bad)
    assert info.value.rows.tolist() == [1]


def test_scalars_and_one_dimensional_vectors_fit_together_across_files(durations, tmp_path):
    _, table, rows = durations
    nested = pa.array([None if r is None else [[v] for v in r] for r in rows], pa.list_(pa.list_(pa.float64())))
    pq.write_table(table.select(["minutes"]), tmp_path / "a.parquet")
    pq.write_table(pa.table({"minutes": nested}), tmp_path / "b.parquet")
    schema = parse_schema({"modality": [{"name": "minutes", "kind": "dense_sequence", "dim": 1}]})
    both = FeatureSpec.fit(schema, [tmp_path / "a.parquet", tmp_path / "b.parquet"])
    one = FeatureSpec.fit(schema, tmp_path / "a.parquet")
    assert both.fitted["minutes"].mean == pytest.approx(one.fitted["minutes"].mean)
    assert both.stats()["minutes"]["present_rows"] == 2 * one.stats()["minutes"]["present_rows"]
    torch.testing.assert_close(
        both.transform(pa.table({"minutes": nested}))["minutes"].values, both.transform(table)["minutes"].values
    )


def test_a_file_holding_only_nulls_fits_beside_files_with_vectors(tmp_path):
    pq.write_table(pa.table({"f": pa.nulls(5), "g": pa.nulls(5)}), tmp_path / "a.parquet")
    pq.write_table(
        pa.table({"f": pa.array([[[1.0, 2.0]], [[3.0, 5.0], [2.0, 2.0]]]), "g": pa.array([[1.0], [2.0, 3.0]])}),
        tmp_path / "b.parquet",
    )
    schema = parse_schema(
        {
            "modality": [
                {"name": "f", "kind": "dense_sequence", "dim": 2},
                {"name": "g", "kind": "dense_sequence", "dim": 1},
            ]
        }
    )
    spec = FeatureSpec.fit(schema, [tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert spec.fitted["f"].mean == pytest.approx([2.0, 3.0]) and spec.fitted["g"].mean == pytest.approx([2.0])
    assert spec.stats()["f"]["rows"] == 7 and spec.stats()["f"]["present_rows"] == 2
    empty = FeatureSpec.fit(schema, tmp_path / "a.parquet")  # no vector at all: nothing to scale by
    assert empty.fitted["f"].encodings == ["none", "none"] and empty.stats()["f"]["present_rows"] == 0


def test_one_pass_row_statistics_match_the_polars_ones(tmp_path):
    rng = np.random.default_rng(2)
    rows = [
        None if rng.random() < 0.1 else [[float(v)] * 2 for v in rng.normal(size=rng.integers(0, 40))]
        for _ in range(500)
    ]
    pq.write_table(pa.table({"f": pa.array(rows, pa.list_(pa.list_(pa.float32())))}), tmp_path / "f.parquet")
    stats = {
        e: FeatureSpec.fit(
            parse_schema(
                {"modality": [{"name": "f", "kind": "dense_sequence", "dim": 2, "max_len": 20, "encoding": e}]}
            ),
            tmp_path / "f.parquet",
        ).stats()["f"]
        for e in ("standard", "none")
    }  # one pass / polars query
    for key in (
        "rows",
        "present_rows",
        "presence_rate",
        "length_p50",
        "length_p90",
        "length_p99",
        "length_max",
        "truncated_rows",
    ):
        assert stats["standard"][key] == stats["none"][key], key


def test_describe_groups_dimensions_into_runs():
    assert venc.describe(["standard", "standard", "log1p", "standard", "none", "log1p"], False) == {
        "standard": "dims 0-1, 3",
        "log1p": "dims 2, 5",
        "none": "dim 4",
    }


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
positive = st.floats(0, 1e5, allow_nan=False, width=32)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data(), encoding=st.sampled_from(["auto", "standard", "log1p"]), dim=st.integers(1, 3))
def test_scaled_vectors_are_finite_missing_stays_missing_and_stats_match_numpy(tmp_path, data, encoding, dim):
    value = positive if data.draw(st.booleans()) else finite
    rows = data.draw(
        st.lists(
            st.one_of(st.none(), st.just([]), st.lists(value, min_size=dim, max_size=dim)), min_size=1, max_size=40
        )
    )
    path = tmp_path / f"v{dim}.parquet"
    table = pa.table({"v": pa.array(rows, F32)})
    pq.write_table(table, path)
    spec = FeatureSpec.fit(
        parse_schema({"modality": [{"name": "v", "kind": "dense", "dim": dim, "encoding": encoding}]}), path
    )
    m = spec.transform(table)["v"]
    present = np.array([bool(r) for r in rows])
    assert m.present.numpy().tolist() == present.tolist()
    assert np.isfinite(m.values.numpy()).all() and (m.values.numpy()[~present] == 0).all()
    fitted = spec.fitted["v"]
    x = np.array([r for r in rows if r], dtype=np.float32).reshape(-1, dim).astype(np.float64)  # (P, dim)
    for j, e in enumerate(fitted.encodings):
        if not x.size or e == "none":
            continue
        col = np.sign(x[:, j]) * np.log1p(np.abs(x[:, j])) if e == "log1p" else x[:, j]
        assert fitted.mean[j] == pytest.approx(col.mean(), rel=1e-9, abs=1e-9)
        if col.std() > max(venc.MIN_STD, 1e-9 * np.abs(col).max()):
            assert fitted.std[j] == pytest.approx(col.std(), rel=1e-6)
    if encoding == "auto" and x.size:
        moments = venc.VectorMoments(dim)
        for part in np.array_split(x, 3):  # merged batch by batch, as fitting streams them
            moments.add(part)
        centred = x - x.mean(axis=0)
        m2 = (centred**2).mean(axis=0)
        skew = np.where(m2 > 0, (centred**3).mean(axis=0) / np.where(m2 > 0, m2, 1) ** 1.5, 0.0)
        candidates = x.min(axis=0) >= 0  # third moments are kept where auto may log
        np.testing.assert_allclose(moments.skew()[candidates], skew[candidates], rtol=1e-6, atol=1e-6)
        norms = np.linalg.norm(x, axis=1)
        assert moments.unit_norm == int((np.abs(norms - 1) <= venc.UNIT_NORM_TOLERANCE).sum())
