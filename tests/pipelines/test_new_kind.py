"""A new modality kind from this file alone: a ``geo_point`` (latitude and longitude columns)
registered on both sides, then fitted, read, trained and served like any built-in kind.

Nothing outside this file knows about ``geo_point``; that is the point of the test.
"""

from __future__ import annotations

import math
import sys
import textwrap
from typing import List, Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import deepsets.encoders.registry as encoder_registry
import deepsets.features.kinds.registry as feature_registry
import deepsets.kinds as kinds
from deepsets.batch import ModalityTensors
from deepsets.encoders import Encoded, register_encoder
from deepsets.features.errors import DataError, SchemaError
from deepsets.features.kinds import register_feature_kind
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts, collect_stats, presence_stats
from deepsets.kinds import KindTraits, kind_traits
from deepsets.modality import ModalityInfo

# --- the model side: traits and an encoder ------------------------------------------------


class GeoPointEncoder(nn.Module):
    """Degrees -> a point on the unit sphere (x, y, z) -> a linear map to ``dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(3, dim)

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "GeoPointEncoder":
        return cls(dim)

    def forward(self, modality: ModalityTensors) -> Encoded:
        lat, lon = torch.deg2rad(modality.values).unbind(1)  # (B,), (B,)
        xyz = torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=1)  # (B, 3)
        return Encoded(self.project(xyz), None, modality.present)  # tokens (B, D)


GEO_POINT = KindTraits("geo_point", jagged=False, values="floats", summarized=False, needs="dim")


# --- the data side: how two float columns become one (B, 2) modality ----------------------


class GeoPointFeature(BaseFeature):
    """``lat`` and ``lon`` columns in degrees; the point is missing when either is null."""

    kind: Literal["geo_point"]
    lat: str
    lon: str

    def source_columns(self) -> List[str]:
        return [self.lat, self.lon]

    def expected_type(self) -> str:
        return "a float column (degrees)"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        return pa.types.is_floating(arrow_type)

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:
        return pl.Float64

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.float64()

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        present = pl.col(self.lat).is_not_null() & pl.col(self.lon).is_not_null()
        return Fitted(stats=collect_stats(lf, presence_stats(present, None, None)))

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        lat = table.column(self.lat).cast(pa.float64()).to_numpy(zero_copy_only=False)  # (B,) NaN where null
        lon = table.column(self.lon).cast(pa.float64()).to_numpy(zero_copy_only=False)
        present = ~np.isnan(lat) & ~np.isnan(lon)  # (B,)
        bad = present & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
        if bad.any():
            raise DataError(
                "latitude must lie in [-90, 90] and longitude in [-180, 180]", column=self.lat, rows=np.nonzero(bad)[0]
            )
        values = np.where(present[:, None], np.stack([lat, lon], axis=1), 0.0).astype(np.float32)  # (B, 2)
        counts.rows += present.size
        counts.present_rows += int(present.sum())
        return ModalityTensors.fixed(torch.from_numpy(values), torch.from_numpy(present))

    def model_info(self, fitted: Fitted) -> ModalityInfo:
        return ModalityInfo(self.name, self.kind, dim=2)


@pytest.fixture
def geo_point(monkeypatch):
    """Register geo_point for one test, on copies of the registries (restored afterwards)."""
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    monkeypatch.setattr(encoder_registry, "_ENCODERS", dict(encoder_registry._ENCODERS))
    monkeypatch.setattr(feature_registry, "_FEATURES", dict(feature_registry._FEATURES))
    register_encoder(GEO_POINT, GeoPointEncoder.from_info)  # the one line on the model side
    register_feature_kind(GeoPointFeature)  # the one line on the data side


SCHEMA = {
    "id_column": "shop_id",
    "modality": [
        {"name": "place", "kind": "geo_point", "lat": "lat", "lon": "lon"},
        {"name": "brand", "kind": "categorical"},
    ],
}


def write_shops(path, n: int, seed: int) -> None:
    """Shops north of the equator sell (label 1), with 10% of labels flipped; brand is noise;
    15% of shops have no location."""
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(-80, 80, n), rng.uniform(-180, 180, n)
    sold = (lat > 0) ^ (rng.random(n) < 0.1)
    located = rng.random(n) > 0.15
    pq.write_table(
        pa.table(
            {
                "shop_id": np.arange(n),
                "lat": pa.array(np.where(located, lat, np.nan), pa.float64(), from_pandas=True),
                "lon": pa.array(lon, pa.float64()),
                "brand": pa.array(rng.choice(["a", "b", "c"], n)),
                "sold": sold.astype(np.int8),
            }
        ),
        path,
    )


def test_a_kind_registered_here_fits_reads_trains_and_serves(geo_point, tmp_path):
    from deepsets.ablation import auc
    from deepsets.builders import build_model
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.features.schema import parse_schema
    from deepsets.features.spec import FeatureSpec
    from deepsets.optim import make_optimizer, make_scheduler
    from deepsets.pipelines.models.pyfunc import embed_table
    from deepsets.pipelines.training.loop import train_step
    from deepsets.pipelines.training.objectives import Objective

    write_shops(tmp_path / "train.parquet", 4000, seed=0)
    write_shops(tmp_path / "valid.parquet", 1000, seed=1)
    spec = FeatureSpec.fit(parse_schema(SCHEMA), tmp_path / "train.parquet")
    assert 0.8 < spec.stats()["place"]["presence_rate"] < 0.9
    spec = FeatureSpec.from_dict(spec.to_dict())  # the saved spec reads back through the registry
    assert [i.kind for i in spec.model_inputs()] == ["categorical", "geo_point"]

    batch = next(iter(ParquetBatchReader(spec, tmp_path / "valid.parquet", batch_size=50)))
    batch.validate()
    assert batch["place"].values.shape == (50, 2) and batch["place"].offsets is None

    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), dim=16, heads=2, fusion="deepset")
    objective = Objective("binary", ("sold",))
    optimizer = make_optimizer(model, "adamw", 1e-2, 0.0)
    scheduler = make_scheduler(optimizer, "constant", 1000, 0)
    for epoch in range(3):
        for train_batch in ParquetBatchReader(
            spec, tmp_path / "train.parquet", batch_size=128, label_columns=["sold"], shuffle_seed=epoch
        ):
            train_step(model, train_batch, objective, optimizer, scheduler, torch.device("cpu"))
    model.eval()
    valid = ParquetBatchReader(spec, tmp_path / "valid.parquet", batch_size=1000, label_columns=["sold"])
    (valid_batch,) = list(valid)
    with torch.no_grad():
        logits = model(valid_batch).logits[:, 0]
    located = valid_batch["place"].present
    assert float(auc(logits[located], valid_batch.labels["sold"][located])) > 0.85  # the planted rule, 10% noise

    served = embed_table(model, spec, pq.read_table(tmp_path / "valid.parquet"), batch_size=300)
    assert served["shop_id"].tolist() == list(range(1000)) and len(served["embedding"][0]) == 16


def test_the_new_kind_checks_its_data(geo_point, tmp_path):
    from deepsets.features.schema import parse_schema
    from deepsets.features.spec import FeatureSpec

    write_shops(tmp_path / "train.parquet", 200, seed=0)
    spec = FeatureSpec.fit(parse_schema(SCHEMA), tmp_path / "train.parquet")
    bad = pq.read_table(tmp_path / "train.parquet")
    bad = bad.set_column(1, "lat", pa.array([91.0] + [0.0] * (bad.num_rows - 1)))
    with pytest.raises(DataError, match=r"column 'lat', row 0: latitude must lie in \[-90, 90\]"):
        spec.transform(bad)
    with pytest.raises(SchemaError, match=r"modality\[0\] \(place\).lon: Field required"):
        parse_schema({"modality": [{"name": "place", "kind": "geo_point", "lat": "lat"}]})


def test_unknown_kinds_are_named_on_every_side():
    from deepsets.encoders import build_encoder
    from deepsets.features.kinds import feature_kinds
    from deepsets.features.schema import parse_schema

    with pytest.raises(ValueError, match=r"unknown modality kind 'geo_point' \(known kinds: dense, dense_sequence"):
        kind_traits("geo_point")
    with pytest.raises(ValueError, match="modality 'place': unknown modality kind 'geo_point'"):
        ModalityInfo("place", "geo_point", dim=2)
    with pytest.raises(
        SchemaError, match=r"modality\[0\] \(place\).kind: unknown kind 'geo_point' \(expected one of categorical, "
    ):
        parse_schema({"modality": [{"name": "place", "kind": "geo_point"}]})
    with pytest.raises(ValueError, match="no traits|unknown modality kind"):
        register_feature_kind(GeoPointFeature)
    assert "geo_point" not in feature_kinds()
    traits_only = KindTraits("traits_only", jagged=False, values="floats", summarized=False, needs="dim")
    kinds.register_kind(traits_only)
    try:
        with pytest.raises(ValueError, match="kind 'traits_only' has traits but no encoder"):
            build_encoder(ModalityInfo("x", "traits_only", dim=3), dim=8, ff_dim=16)
    finally:
        del kinds._KINDS["traits_only"]
    with pytest.raises(ValueError, match="already registered with other traits"):
        kinds.register_kind(KindTraits("dense", jagged=True, values="floats", summarized=True, needs="dim"))
    with pytest.raises(ValueError, match="positions need a jagged kind"):
        KindTraits("odd", jagged=False, values="ids", summarized=False, needs="num_embeddings", positions=True)


PLUGIN = '''
"""An installed plug-in: registers the kind 'compass' (a heading in degrees) on both sides."""
from typing import Literal

import numpy as np
import pyarrow as pa
import polars as pl
import torch
from torch import nn

from deepsets.batch import ModalityTensors
from deepsets.encoders import Encoded, register_encoder
from deepsets.kinds import KindTraits
from deepsets.modality import ModalityInfo
from deepsets.features.kinds import register_feature_kind
from deepsets.features.kinds.base import BaseFeature, Fitted


class CompassEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.project = nn.Linear(2, dim)

    def forward(self, modality):
        angle = torch.deg2rad(modality.values)
        return Encoded(self.project(torch.stack([angle.cos(), angle.sin()], 1)), None, modality.present)


class CompassFeature(BaseFeature):
    kind: Literal["compass"]

    def expected_type(self):
        return "a float column (degrees)"

    def accepts(self, column, arrow_type):
        return pa.types.is_floating(arrow_type)

    def fit_dtype(self, id_type):
        return pl.Float64

    def null_type(self, id_type):
        return pa.float64()

    def fit(self, lf):
        return Fitted()

    def convert(self, table, fitted, counts):
        x = table.column(self.source_column).to_numpy(zero_copy_only=False).astype(np.float32)
        present = ~np.isnan(x)
        return ModalityTensors.fixed(torch.from_numpy(np.nan_to_num(x)), torch.from_numpy(present))

    def model_info(self, fitted):
        return ModalityInfo(self.name, "compass", dim=1)


register_encoder(KindTraits("compass", jagged=False, values="floats", summarized=False, needs="dim"),
                 lambda info, dim, ff_dim: CompassEncoder(dim))
register_feature_kind(CompassFeature)
'''


def test_an_installed_plugin_is_found_by_its_entry_point(monkeypatch, tmp_path):
    """A package that names its module under the ``deepsets.kinds`` entry-point group is
    imported on the first lookup of its kind, in any process (this is how Ray workers and
    served models find a kind the driver registered)."""
    (tmp_path / "compass_kind.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "compass_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: compass-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepsets.kinds]\ncompass = compass_kind\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    monkeypatch.setattr(encoder_registry, "_ENCODERS", dict(encoder_registry._ENCODERS))
    monkeypatch.setattr(feature_registry, "_FEATURES", dict(feature_registry._FEATURES))
    monkeypatch.delitem(sys.modules, "compass_kind", raising=False)
    try:
        check_compass_kind()
    finally:
        sys.modules.pop("compass_kind", None)


def check_compass_kind() -> None:
    from deepsets.batch import FeatureBatch
    from deepsets.builders import build_model
    from deepsets.features.schema import parse_schema

    schema = parse_schema({"modality": [{"name": "heading", "kind": "compass"}]})  # imports compass_kind
    assert type(schema.modality[0]).__name__ == "CompassFeature" and kind_traits("compass").needs == "dim"
    model = build_model([ModalityInfo("heading", "compass", dim=1)], dim=8, heads=2)
    batch_values = torch.tensor([0.0, 90.0, math.nan])
    tensors = ModalityTensors.fixed(torch.nan_to_num(batch_values), ~torch.isnan(batch_values))
    out = model(FeatureBatch({"heading": tensors}, 3))
    assert out.fused.shape == (3, 8) and torch.isfinite(out.fused).all()


def test_traits_that_cannot_run_are_refused_when_declared_or_built():
    with pytest.raises(ValueError, match="a summarizer needs a jagged kind"):
        KindTraits("odd", jagged=False, values="floats", summarized=True, needs="dim")
    from deepsets.batch import FeatureBatch
    from deepsets.builders import build_model

    class JaggedEncoder(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.project = nn.Linear(1, dim)

        def forward(self, modality):
            return Encoded(self.project(modality.values), modality.offsets, modality.present)

    traits = KindTraits("bag_of_floats", jagged=True, values="floats", summarized=False, needs="dim")
    saved = dict(kinds._KINDS), dict(encoder_registry._ENCODERS)
    try:
        register_encoder(traits, lambda info, dim, ff_dim: JaggedEncoder(dim))
        model = build_model([ModalityInfo("bag", "bag_of_floats", dim=1)], dim=4, heads=2, fusion="deepset")
        bag = ModalityTensors.from_lengths(torch.randn(3, 1), torch.tensor([2, 1]))
        with pytest.raises(
            ValueError, match="'bag': its encoder returned jagged tokens, but its kind is not summarized"
        ):
            model(FeatureBatch({"bag": bag}, 2))
    finally:
        kinds._KINDS.clear(), kinds._KINDS.update(saved[0])
        encoder_registry._ENCODERS.clear(), encoder_registry._ENCODERS.update(saved[1])


def test_a_broken_plugin_is_named(monkeypatch, tmp_path):
    info = tmp_path / "broken_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepsets.kinds]\nbroken = broken_kind_module_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ValueError,
        match="modality kind 'broken': its plug-in 'broken_kind_module_that_is_missing' .* failed to import: ModuleNotFoundError",
    ):
        kind_traits("broken")
