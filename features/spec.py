"""``FeatureSpec``: a schema plus what was fitted on training data; applies, never refits.

spec = FeatureSpec.fit(load_schema("schema.toml"), "data/train/")
spec.save("spec.json")
spec = FeatureSpec.load("spec.json")           # identical transforms
batch = spec.transform(arrow_table)            # FeatureBatch
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from deepsets.batch import FeatureBatch
from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import Paths, check_columns, open_parquet, resolve_inputs
from deepsets.features.ids import check_row_id_kind, column_id_type
from deepsets.features.kinds.base import Fitted, ModalityCounts
from deepsets.features.labels import key_tensor, label_tensor
from deepsets.features.schema import FeatureSchema, parse_schema
from deepsets.kinds import kind_traits
from deepsets.modality import ModalityInfo

SPEC_FORMAT_VERSION = 1


def _reads_ids(feature) -> bool:
    return kind_traits(feature.kind).values == "ids"


def _check_id_types(path: str, arrow_schema: pa.Schema, schema: FeatureSchema, seen: Dict[str, tuple]) -> None:
    """Every file must hold the same id type (int or string) in a given id column.

    Raises:
        DataError: naming the file and column that differ from the first file.
    """
    for m in schema.modality:
        if not _reads_ids(m):
            continue
        id_type = column_id_type(arrow_schema.field(m.source_column).type)
        if id_type is None:  # an all-null column says nothing about the id type
            continue
        first = seen.setdefault(m.source_column, (id_type, path))
        if first[0] != id_type:
            raise DataError(
                f"{id_type} ids here but {first[0]} ids in {first[1]} (one type per column)",
                file=path,
                column=m.source_column,
            )


def _fit_views(path: str, schema: FeatureSchema, id_types: Dict[str, tuple]) -> pl.LazyFrame:
    frame = pl.scan_parquet(path)
    dtypes = frame.collect_schema()
    views = {}  # a column read by two modalities (e.g. a sequence and a set view) appears once
    for m in schema.modality:
        for c in m.source_columns():
            views[c] = m.fit_view(c, dtypes[c], id_types.get(c, (None,))[0])
    return frame.select(list(views.values()))


class FeatureSpec:
    """A validated schema and the fitted state (vocabularies, mean/std, stats) of each modality.

    Args:
        schema: the validated schema.
        fitted: modality name -> what fitting learned.
    """

    def __init__(self, schema: FeatureSchema, fitted: Dict[str, Fitted]) -> None:
        missing = sorted(set(schema.names) - set(fitted))
        if missing:
            raise ValueError(f"no fitted state for modalities {missing}")
        self.schema = schema
        self.fitted = fitted

    @property
    def names(self) -> list[str]:
        return self.schema.names

    def modality(self, name: str):
        return self.schema.by_name()[name]

    def num_embeddings(self, name: str) -> Optional[int]:
        """Embedding-table rows of an id modality (padding and OOV included), else None."""
        return self.modality(name).num_embeddings(self.fitted[name])

    def model_inputs(self) -> list[ModalityInfo]:
        """One :class:`deepsets.modality.ModalityInfo` per modality, sorted by name: what the
        model builders need (widths, table sizes, longest rows)."""
        return [self.modality(name).model_info(self.fitted[name]) for name in self.names]

    def check_id_types(self, path: str, arrow_schema: pa.Schema) -> None:
        """A file's id columns must hold the id type (int or string) the spec was fitted on.

        Raises:
            DataError: naming the file and column.
        """
        for m in self.schema.modality:
            if not _reads_ids(m) or self.fitted[m.name].id_type is None:
                continue
            t = arrow_schema.field(m.source_column).type
            found = column_id_type(t)
            if found is not None and found != self.fitted[m.name].id_type:
                raise DataError(
                    f"expected {self.fitted[m.name].id_type} ids (as in the training data), found {t}",
                    file=path,
                    column=m.source_column,
                )

    def subset(self, names: Sequence[str]) -> "FeatureSpec":
        """The same fitted spec restricted to the modalities ``names`` (nothing refitted).

        Raises:
            ValueError: for an unknown name or an empty selection.
        """
        unknown = sorted(set(names) - set(self.names))
        if unknown or not names:
            raise ValueError(f"cannot keep modalities {sorted(names)}: unknown {unknown}, spec has {self.names}")
        schema = self.schema.model_copy(update={"modality": [m for m in self.schema.modality if m.name in names]})
        return FeatureSpec(schema, {k: v for k, v in self.fitted.items() if k in names})

    def open_checked(self, path: str, extra_columns: Sequence[str] = (), pre_buffer: bool = True):
        """Open a Parquet file that must hold every modality column (and ``extra_columns``)
        with an accepted type and the trained id types; returns the ``pq.ParquetFile``.

        Raises:
            DataError: naming the file (and column) that is wrong.
        """
        parquet = open_parquet(path, pre_buffer=pre_buffer)
        check_columns(path, parquet.schema_arrow, self.schema.modality, extra_columns)
        self.check_id_types(path, parquet.schema_arrow)
        return parquet

    def stats(self) -> Dict[str, dict]:
        return {name: dict(self.fitted[name].stats) for name in self.names}

    # --- fitting -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, schema: FeatureSchema, paths: Paths, *, validate: bool = True, progress: bool = False
    ) -> "FeatureSpec":
        """Fit vocabularies and normalization on training Parquet, streaming with polars.

        Args:
            schema: the validated schema.
            paths: files, directories or globs of training Parquet.
            validate: afterwards read every row through the fitted spec, so bad values are
                reported now (file, column, rows) and truncation/OOV counts are exact.
            progress: show a progress bar for the validation pass.

        Raises:
            DataError: for missing files, non-Parquet files, missing columns, wrong types,
                no rows at all, or (with ``validate``) any bad value.
        """
        files = resolve_inputs(paths)
        total_rows = 0
        id_types: Dict[str, tuple] = {}  # column -> (id type, first file)
        row_id_types: Dict[str, tuple] = {}
        for path in files:
            pf = open_parquet(path)
            check_columns(path, pf.schema_arrow, schema.modality)
            _check_id_types(path, pf.schema_arrow, schema, id_types)
            check_row_id_kind(path, pf.schema_arrow, schema.id_column, row_id_types)
            total_rows += pf.metadata.num_rows
        if total_rows == 0:
            raise DataError(
                f"input has no rows ({len(files)} file(s), all empty)", file=files[0] if len(files) == 1 else None
            )
        untyped = [m for m in schema.modality if _reads_ids(m) and m.source_column not in id_types]
        if untyped:
            m = untyped[0]
            raise DataError(
                f"holds no value in any training file (its Arrow type is null), so the id type (int or string) of modality "
                f"'{m.name}' cannot be learned: give it values, or leave the modality out",
                column=m.source_column,
            )
        # Each file's columns become one canonical view per column (ids cast to Int64/String,
        # numbers to Float64, float vectors reduced to their lengths), so files may differ in
        # float width or list flavour; polars streams the union of the views.
        lf = pl.concat([_fit_views(f, schema, id_types) for f in files], how="vertical")
        try:
            fitted = {m.name: m.fit(lf) for m in schema.modality}
        except pl.exceptions.PolarsError as err:
            raise DataError(f"cannot fit on this data: {str(err).splitlines()[0]}") from None
        spec = cls(schema, fitted)
        if validate:
            reader = spec.validate(files, progress=progress)
            for name, counts in reader.counts.items():
                read = counts.as_dict()
                spec.fitted[name].stats.update(
                    truncated_rows=read["truncated_rows"],
                    dropped_elements=read["dropped_elements"],
                    oov_rate=read["oov_rate"] if read["ids"] else spec.fitted[name].stats.get("oov_rate", 0.0),
                )
        return spec

    def validate(self, paths: Paths, *, progress: bool = False, desc: str = "validating"):
        """Read every row of ``paths`` through this spec, so a bad value is reported now.

        Args:
            paths: files, directories or globs of Parquet.
            progress: show a progress bar.
            desc: the progress bar's label.

        Returns:
            The finished reader (its ``counts`` hold truncation and OOV counts per modality).

        Raises:
            DataError: for the first bad value, naming its file, column and rows.
        """
        from deepsets.features.reader import ParquetBatchReader

        reader = ParquetBatchReader(self, resolve_inputs(paths), batch_size=8192, progress=progress, desc=desc)
        for _ in reader:
            continue
        return reader

    # --- applying ------------------------------------------------------------------------

    def transform(
        self,
        table: pa.Table | pa.RecordBatch,
        *,
        label_columns: Sequence[str] = (),
        counts: Optional[Dict[str, ModalityCounts]] = None,
        with_ids: bool = True,
        key_columns: Sequence[str] = (),
    ) -> FeatureBatch:
        """Turn Arrow rows into a :class:`FeatureBatch` with the fitted mappings.

        Args:
            table: rows holding every modality column (and the label/id columns asked for).
            label_columns: columns to carry as float32 labels.
            counts: per-modality counters to add this batch's truncation/OOV/missing counts to.
            with_ids: carry the schema's id column (if declared) as ``batch.ids``.
            key_columns: integer columns to carry as int64 ``batch.labels`` (query groups,
                item ids).

        Raises:
            DataError: naming the column and batch-relative rows of a bad value.
        """
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = self._typed_nulls(table)
        modalities = {}
        for m in self.schema.modality:
            local = ModalityCounts()
            modalities[m.name] = m.convert(table, self.fitted[m.name], local)
            if counts is not None:
                counts.setdefault(m.name, ModalityCounts()).add(local)
        labels = {c: label_tensor(table.column(c), c) for c in label_columns}
        labels.update({c: key_tensor(table.column(c), c) for c in key_columns})
        ids = None
        if with_ids and self.schema.id_column:
            ids = table.column(self.schema.id_column).to_numpy()
            if ids.dtype.kind in "iu":
                ids = ids.astype(np.int64, copy=False)
        return FeatureBatch(modalities=modalities, num_rows=table.num_rows, labels=labels, ids=ids)

    def _typed_nulls(self, table: pa.Table) -> pa.Table:
        """Columns of Arrow type ``null`` (no value at all, e.g. from pandas) become all-null
        columns of the type their modality reads, so they convert as 'missing everywhere'."""
        for m in self.schema.modality:
            for column in m.source_columns():
                if column in table.column_names and pa.types.is_null(table.schema.field(column).type):
                    typed = pa.nulls(table.num_rows, m.null_type(self.fitted[m.name].id_type))
                    table = table.set_column(table.schema.get_field_index(column), column, typed)
        return table

    # --- saving --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "schema": self.schema.model_dump(mode="json", exclude_none=True),
            "fitted": {name: self.fitted[name].model_dump(mode="json") for name in self.names},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<spec>") -> "FeatureSpec":
        """Rebuild a spec saved by :meth:`to_dict`.

        Raises:
            DataError: for an unknown format version or a missing part.
        """
        if data.get("format_version") != SPEC_FORMAT_VERSION:
            raise DataError(
                f"{source}: unsupported spec format_version {data.get('format_version')!r} (expected {SPEC_FORMAT_VERSION})"
            )
        if not isinstance(data.get("schema"), dict) or not isinstance(data.get("fitted"), dict):
            raise DataError(f"{source}: not a feature spec (needs 'schema' and 'fitted' objects)")
        schema = parse_schema(data["schema"], source)
        try:
            fitted = {name: Fitted.model_validate(value) for name, value in data["fitted"].items()}
            return cls(schema, fitted)
        except (ValueError, TypeError) as err:
            raise DataError(f"{source}: broken fitted state: {' '.join(str(err).split())}") from None

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON to a local path or a URI (``s3://...``), whole or not at all."""
        storage.write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSpec":
        """Load a spec saved with :meth:`save`.

        Raises:
            DataError: when the file is missing or not a spec.
        """
        try:
            data = json.loads(storage.read_text(path))
        except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            raise DataError(f"cannot read feature spec: {err}", file=str(path)) from None
        return cls.from_dict(data, str(path))
