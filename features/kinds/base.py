"""What every modality kind shares: schema fields, fitted state, read counters, id vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Union

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, model_validator

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import is_list_type, split_list
from deepsets.features.ids import IdMapper, id_type_of
from deepsets.kinds import kind_traits
from deepsets.modality import ModalityInfo

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # an identifier: names key nn.ModuleDicts and columns


class Fitted(BaseModel):
    """What fitting learned for one modality (saved in the spec JSON)."""

    model_config = ConfigDict(extra="forbid")

    id_type: Optional[str] = None
    vocab: Optional[List[Union[int, str]]] = None
    mean: Optional[List[float]] = None  # numeric: per column; dense, dense_sequence: per dimension
    std: Optional[List[float]] = None
    encodings: Optional[List[str]] = None  # each column's / dimension's encoding, ``auto`` resolved
    edges: Optional[List[List[float]]] = None  # numeric: each column's quantile edges ([] if unused)
    stats: Dict[str, Any] = Field(default_factory=dict)
    _mapper: Any = PrivateAttr(default=None)  # IdMapper built once, on first use


@dataclass
class ModalityCounts:
    """Running counts while reading: nothing is cut or replaced without being counted."""

    rows: int = 0
    present_rows: int = 0
    truncated_rows: int = 0
    dropped_elements: int = 0
    ids: int = 0
    oov_ids: int = 0
    missing_values: int = 0

    def add(self, other: "ModalityCounts") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["presence_rate"] = self.present_rows / self.rows if self.rows else 0.0
        out["oov_rate"] = self.oov_ids / self.ids if self.ids else 0.0
        return out


class BaseFeature(BaseModel):
    """Fields every modality has. ``column`` defaults to ``name``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=NAME_PATTERN)  # the modality's name, unique in the schema
    column: Optional[str] = Field(default=None, min_length=1)  # the Parquet column it reads (default: name)

    @property
    def source_column(self) -> str:
        return self.column or self.name

    def source_columns(self) -> List[str]:
        return [self.source_column]

    def expected_type(self) -> str:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:  # pragma: no cover
        raise NotImplementedError

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:  # pragma: no cover
        """The polars type every file's column is cast to before fitting (so files may differ
        in width or list flavour: float32/float64, list/large_list/fixed_size_list, ...)."""
        raise NotImplementedError

    def fit_view(self, column: str, dtype: pl.DataType, id_type: Optional[str]) -> pl.Expr:
        """What :meth:`fit` reads from one file's column (named ``column``): by default the
        column cast to :meth:`fit_dtype`; float-vector kinds read only their lengths."""
        return pl.col(column).cast(self.fit_dtype(id_type))

    def fit(self, lf: pl.LazyFrame) -> Fitted:  # pragma: no cover
        """Fit on a frame of :meth:`fit_view` columns, streaming."""
        raise NotImplementedError

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:  # pragma: no cover
        raise NotImplementedError

    def num_embeddings(self, fitted: Fitted) -> Optional[int]:
        """Embedding-table rows for id kinds; None for float kinds."""
        return None

    def null_type(self, id_type: Optional[str]) -> pa.DataType:  # pragma: no cover - every kind overrides
        """The Arrow type a column of this kind has when it holds values (a ``null``-typed
        column, e.g. from pandas, is cast to it and reads as missing everywhere)."""
        raise NotImplementedError

    def model_info(self, fitted: Fitted) -> ModalityInfo:
        """What the model builders need to know (widths, table size, longest row), from the
        kind's traits (``deepsets.kinds``) and what fitting learned; a kind whose sizes come
        from elsewhere overrides this."""
        traits = kind_traits(self.kind)
        max_len = None
        if traits.positions:
            max_len = getattr(self, "max_len", None) or (int(fitted.stats.get("length_max") or 0) or None)
        return ModalityInfo(
            name=self.name,
            kind=self.kind,
            dim=getattr(self, "dim", None),
            num_embeddings=self.num_embeddings(fitted),
            num_columns=len(self.source_columns()) if traits.needs == "num_columns" else None,
            max_len=max_len,
        )


class IdVocabulary(BaseModel):
    """Id mapping fields: a fitted vocabulary (``min_count``, ``max_size``) or ``hash_buckets``."""

    min_count: PositiveInt = 1  # vocabulary: ids seen fewer times in training are out of vocabulary
    max_size: Optional[PositiveInt] = None  # vocabulary: keep at most this many ids, the most frequent
    hash_buckets: Optional[PositiveInt] = None  # hash the ids into this many buckets instead of a vocabulary

    @model_validator(mode="after")
    def _one_mapping(self) -> "IdVocabulary":
        if self.hash_buckets is not None and (self.min_count != 1 or self.max_size is not None):
            raise ValueError("hash_buckets cannot be combined with min_count/max_size (hashing has no vocabulary)")
        return self

    def mapper(self, fitted: Fitted) -> IdMapper:
        """The id mapping of this modality (built once per fitted state)."""
        if fitted._mapper is None:
            fitted._mapper = IdMapper(
                id_type=fitted.id_type or "int", vocab=fitted.vocab, hash_buckets=self.hash_buckets
            )
        return fitted._mapper

    def fit_ids(self, ids: pl.LazyFrame, id_type: str) -> Fitted:
        """Fit the vocabulary on a one-column frame ``id`` of every id occurrence (nulls dropped).

        Ties in frequency are broken by id value so the vocabulary is deterministic.
        """
        counts = ids.drop_nulls().group_by("id").agg(pl.len().alias("n")).collect(engine="streaming")
        total = int(counts["n"].sum()) if counts.height else 0
        stats: Dict[str, Any] = {"ids": total, "distinct_ids": counts.height}
        if self.hash_buckets is not None:
            stats["oov_rate"] = 0.0
            return Fitted(id_type=id_type, stats=stats)
        kept = counts.filter(pl.col("n") >= self.min_count).sort(["n", "id"], descending=[True, False])
        if self.max_size is not None:
            kept = kept.head(self.max_size)
        covered = int(kept["n"].sum()) if kept.height else 0
        stats.update(vocab_size=kept.height, oov_rate=(1 - covered / total) if total else 0.0)
        return Fitted(id_type=id_type, vocab=kept["id"].to_list(), stats=stats)


def length_view(column: str, dtype: pl.DataType) -> pl.Expr:
    """Per-row list length (null for a null row) without touching the values."""
    col = pl.col(column)
    return (col.arr.len() if isinstance(dtype, pl.Array) else col.list.len()).cast(pl.Int64).alias(column)


def presence_stats(present: pl.Expr, lengths: Optional[pl.Expr], max_len: Optional[int]) -> List[pl.Expr]:
    """Polars aggregations: row count, present rows, length quantiles and over-long rows."""
    exprs = [pl.len().alias("rows"), present.sum().alias("present_rows")]
    if lengths is not None:
        present_lengths = lengths.filter(present)
        for q in (0.5, 0.9, 0.99):
            exprs.append(present_lengths.quantile(q, interpolation="nearest").alias(f"length_p{int(q * 100)}"))
        exprs.append(present_lengths.max().alias("length_max"))
        if max_len is not None:
            exprs.append((lengths > max_len).sum().alias("truncated_rows"))
    return exprs


def collect_stats(lf: pl.LazyFrame, exprs: List[pl.Expr]) -> Dict[str, Any]:
    row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
    rows = int(row["rows"])
    row["presence_rate"] = (int(row["present_rows"] or 0) / rows) if rows else 0.0
    return {k: (v if v is not None else 0) for k, v in row.items()}


def id_dtype(id_type: Optional[str]) -> pl.DataType:
    return pl.Int64 if id_type == "int" else pl.String


def id_arrow_type(id_type: Optional[str]) -> pa.DataType:
    return pa.int64() if id_type == "int" else pa.string()


def id_list_type_ok(arrow_type: pa.DataType) -> bool:
    return is_list_type(arrow_type) and id_type_of(arrow_type.value_type) is not None


def fit_id_list(feature: BaseFeature, vocab: IdVocabulary, lf: pl.LazyFrame, max_len: Optional[int]) -> Fitted:
    """Presence, length quantiles, over-long rows and the vocabulary of a list-of-ids column."""
    col = pl.col(feature.source_column)
    lengths = col.list.len()
    present = col.is_not_null() & (lengths > 0)
    stats = collect_stats(lf, presence_stats(present, lengths, max_len))
    id_type = "int" if lf.collect_schema()[feature.source_column].inner.is_integer() else "string"
    ids = lf.select(col).explode(feature.source_column)
    fitted = vocab.fit_ids(ids.rename({feature.source_column: "id"}), id_type)
    fitted.stats = {**stats, **fitted.stats}
    return fitted


def mapped_id_list(feature: "BaseFeature", mapper: IdMapper, table: pa.Table, counts: ModalityCounts):
    """Split a list-of-ids column and map every id: returns (parts, present (B,), indices (N,))."""
    parts = split_list(table.column(feature.source_column))
    flat = mapper.check(parts.flat, feature.source_column, parts.row_of_element)
    indices, oov = mapper.map(flat)  # (N,)
    present = parts.valid & (parts.lengths > 0)  # (B,)
    counts.rows += present.size
    counts.present_rows += int(present.sum())
    counts.ids += int(indices.size)
    counts.oov_ids += oov
    return parts, present, np.asarray(indices, dtype=np.int64)


class IdListFeature(BaseFeature, IdVocabulary):
    """What ``id_sequence`` and ``id_set`` share: a list of int or string ids, cut to ``max_len``."""

    max_len: Optional[PositiveInt] = None  # longer rows are cut (and counted); unset: no cut

    def expected_type(self) -> str:
        return "list<int> or list<string>"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        return id_list_type_ok(arrow_type)

    def num_embeddings(self, fitted: Fitted) -> Optional[int]:
        return self.mapper(fitted).num_embeddings

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:
        return pl.List(id_dtype(id_type))

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.list_(id_arrow_type(id_type))

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        return fit_id_list(self, self, lf, self.max_len)
