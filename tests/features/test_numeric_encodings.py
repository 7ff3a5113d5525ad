"""Numeric encodings: standardized, log1p, quantile, piecewise-linear, periodic; 'auto' takes
log1p for heavy tails; missing values stay missing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features import numeric_encodings as enc
from deepsets.features.errors import SchemaError
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec


def schema(**numeric):
    return parse_schema({"modality": [{"name": "num", "kind": "numeric", "columns": ["visits", "age"], **numeric}]})


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Visits: counts with median ~50 reaching the thousands; age: normal; 10% of ages missing."""
    rng = np.random.default_rng(0)
    n = 4000
    visits = np.round(rng.lognormal(np.log(50), 1.1, n))
    age = np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 10, n))
    path = tmp_path_factory.mktemp("numeric") / "shop.parquet"
    pq.write_table(pa.table({"visits": visits, "age": age}), path)
    return path, visits, age


def test_auto_takes_log1p_for_heavy_tailed_counts_only(shop):
    path, visits, _ = shop
    assert np.median(visits) == pytest.approx(50, rel=0.1) and visits.max() > 1000
    spec = FeatureSpec.fit(schema(), path)
    fitted = spec.fitted["num"]
    assert fitted.encodings == ["log1p", "standard"] and spec.stats()["num"]["encodings"] == {
        "visits": "log1p",
        "age": "standard",
    }
    logged = np.log1p(visits)
    assert fitted.mean[0] == pytest.approx(logged.mean()) and fitted.std[0] == pytest.approx(logged.std())
    values = spec.transform(pq.read_table(path)).modalities["num"].values.numpy()
    assert np.abs(values[:, 0]).max() < 5  # a plain z-score of the raw counts reaches far beyond
    assert np.abs((visits - visits.mean()) / visits.std()).max() > 10


def test_every_encoding_reads_back_from_a_saved_spec_with_missing_values_kept_missing(shop, tmp_path):
    path, _, age = shop
    table = pq.read_table(path).slice(0, 300)
    for encoding, width in (("standard", 2), ("log1p", 2), ("quantile", 2), ("ple", 16), ("periodic", 2)):
        spec = FeatureSpec.fit(schema(encoding=encoding, bins=8), path)
        spec.save(tmp_path / "spec.json")
        again = FeatureSpec.load(tmp_path / "spec.json")
        info = again.model_inputs()[0]
        assert info.num_columns == width and info.periodic_columns == ((0, 1) if encoding == "periodic" else ())
        batch = again.transform(table)
        batch.validate()
        m = batch["num"]
        torch.testing.assert_close(m.values, spec.transform(table)["num"].values)
        missing_age = np.isnan(age[:300])
        half = width // 2
        assert not m.observed[missing_age][:, half:].any() and (m.values[missing_age][:, half:] == 0).all()
        assert m.present.all()  # visits is always there


def test_piecewise_linear_by_hand():
    edges = np.array([0.0, 1.0, 3.0])
    out = enc.piecewise_linear(np.array([-1.0, 0.5, 1.0, 2.0, 5.0]), edges)
    assert out.tolist() == [[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1]]


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=30),
    edges=st.lists(st.floats(-100, 100), min_size=2, max_size=10, unique=True),
)
def test_piecewise_linear_is_monotone_and_bounded(x, edges):
    edges = np.array(sorted(edges))
    xs = np.sort(np.array(x))
    out = enc.piecewise_linear(xs, edges)  # (B, T)
    assert ((0 <= out) & (out <= 1)).all()
    assert (np.diff(out.sum(axis=1)) >= -1e-12).all()  # a larger value never encodes lower


def test_quantile_scores_are_monotone_and_centred():
    edges = np.quantile(np.random.default_rng(1).exponential(size=10_000), np.linspace(0, 1, 33))
    scores = enc.encode(np.array([0.0, np.median(edges), 50.0]), np.array([True, True, True]), "quantile", 0, 1, edges)[
        :, 0
    ]
    assert scores[0] < scores[1] < scores[2] and abs(scores[1]) < 0.05


def test_log1p_is_mirrored_below_zero():
    assert enc.symlog(np.array([-np.e + 1, 0.0, np.e - 1])).tolist() == pytest.approx([-1.0, 0.0, 1.0])


def test_per_column_encodings_and_their_mistakes():
    s = schema(encoding="standard", encodings={"visits": "ple"})
    assert s.modality[0].encodings == {"visits": "ple"}
    with pytest.raises(SchemaError, match=r"encodings name columns not in this group: \['price'\]"):
        schema(encodings={"price": "ple"})
    with pytest.raises(SchemaError, match=r"modality\[0\] \(num\).encoding: Input should be 'auto', 'standard'"):
        schema(encoding="zscore")


def test_a_spec_fitted_before_encodings_still_standardizes(shop, tmp_path):
    path, visits, _ = shop
    spec = FeatureSpec.fit(schema(encoding="standard"), path)
    data = spec.to_dict()
    for key in ("encodings", "edges"):
        data["fitted"]["num"].pop(key)
    data["schema"]["modality"][0].pop("encoding")
    old = FeatureSpec.from_dict(json.loads(json.dumps(data)))
    table = pq.read_table(path).slice(0, 50)
    torch.testing.assert_close(old.transform(table)["num"].values, spec.transform(table)["num"].values)


def test_periodic_values_get_a_learned_embedding():
    from deepsets.batch import FeatureBatch, ModalityTensors
    from deepsets.builders import build_model
    from deepsets.modality import ModalityInfo

    torch.manual_seed(0)
    model = build_model(
        [ModalityInfo("num", "numeric", num_columns=3, periodic_columns=(1,))], dim=8, heads=2, fusion="deepset"
    )
    encoder = model.encoders["num"]
    observed = torch.tensor([[True, True, False], [True, True, True]])
    batch = FeatureBatch(
        {"num": ModalityTensors.fixed(torch.randn(2, 3), torch.ones(2, dtype=torch.bool), observed)}, 2
    )
    model(batch).fused.sum().backward()
    assert encoder.embed.frequencies.shape == (1, 16) and encoder.embed.frequencies.grad.abs().sum() > 0
    assert encoder.mlp[0].in_features == 2 + 16 + 3  # two plain values, one embedded value, three observed flags


def test_auto_keeps_a_left_skewed_column_standard_and_logs_its_mirror_image(tmp_path):
    """Scores from 0 to 10, most at 10 (skewness about -3.2): the long tail points at zero,
    where log1p would only stretch it, so auto standardizes; the same column mirrored
    (``10 - x``, a heavy right tail) takes log1p."""
    rng = np.random.default_rng(0)
    score = np.where(rng.random(4000) < 0.12, rng.integers(0, 10, 4000), 10).astype(np.float64)
    mirrored = 10 - score
    centred = score - score.mean()
    skew = (centred**3).mean() / (centred**2).mean() ** 1.5
    assert -3.4 < skew < -3.0 and (score == 10).mean() > 0.85
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"score": score, "mirrored": mirrored}), path)
    s = parse_schema({"modality": [{"name": "num", "kind": "numeric", "columns": ["score", "mirrored"]}]})
    spec = FeatureSpec.fit(s, path)
    assert spec.fitted["num"].encodings == ["standard", "log1p"]
    assert spec.fitted["num"].mean[0] == pytest.approx(score.mean()) and spec.fitted["num"].std[0] == pytest.approx(
        score.std()
    )
    assert spec.fitted["num"].mean[1] == pytest.approx(np.log1p(mirrored).mean())


def test_auto_never_logs_a_column_with_negative_values():
    assert enc.prefers_log1p(5.0, 0.0) and not enc.prefers_log1p(5.0, -1.0)
    assert not enc.prefers_log1p(-5.0, 0.0) and not enc.prefers_log1p(1.5, 0.0)
    assert not enc.prefers_log1p(None, 0.0) and not enc.prefers_log1p(float("nan"), 0.0)
