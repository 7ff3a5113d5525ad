"""The feature schema: a TOML file declaring each modality, validated before anything runs.

Example (one ``[[modality]]`` table per modality; ``column`` defaults to ``name``)::

    id_column = "item_id"

    [[modality]]
    name = "image"
    kind = "dense"
    dim = 256

    [[modality]]
    name = "history"
    kind = "id_sequence"
    max_len = 200
    truncate = "keep_last"
    max_size = 50000          # or: hash_buckets = 100000

    [[modality]]
    name = "profile"
    kind = "numeric"
    columns = ["age", "income"]
"""

from __future__ import annotations

import os
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from deepsets.features import storage
from deepsets.features.errors import SchemaError, describe_problem, location
from deepsets.features.kinds import feature_class, feature_kinds
from deepsets.features.kinds.base import BaseFeature


class FeatureSchema(BaseModel):
    """The declared modalities of a dataset and its optional id column.

    Build it with :func:`parse_schema` or :func:`load_schema`, which pick each modality's class
    by its ``kind`` (``deepsets.features.kinds``) and report every problem at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: Optional[str] = None  # the row id column (optional), carried along as batch.ids and into outputs
    modality: List[SerializeAsAny[BaseFeature]] = Field(min_length=1)  # one [[modality]] table per modality

    @field_validator("modality", mode="before")
    @classmethod
    def _by_kind(cls, entries: Any) -> Any:
        return features_by_kind(entries)

    def by_name(self) -> dict[str, Any]:
        return {m.name: m for m in self.modality}

    @property
    def names(self) -> list[str]:
        return sorted(m.name for m in self.modality)

    def source_columns(self) -> list[str]:
        """Every Parquet column the schema reads (modalities and id), without repeats."""
        cols = [self.id_column] if self.id_column else []
        for m in self.modality:
            cols.extend(c for c in m.source_columns() if c not in cols)
        return cols


def features_by_kind(entries: Any) -> Any:
    """``[[modality]]`` tables given as dicts -> instances of their kind's class (other values
    are left for validation to report). Used where a schema is built without
    :func:`parse_schema`, e.g. ``FeatureSchema(modality=[{...}])``.

    Raises:
        ValueError: for a table whose kind no class reads.
    """
    if not isinstance(entries, (list, tuple)):
        return entries
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("kind"), str):
            try:
                entry = feature_class(entry["kind"]).model_validate(entry)
            except KeyError:
                raise ValueError(
                    f"modality[{i}]: unknown kind {entry['kind']!r} (expected one of {', '.join(feature_kinds())})"
                ) from None
        out.append(entry)
    return out


def parse_modality(entry: Any, where: str) -> Tuple[Optional[BaseFeature], List[str]]:
    """One ``[[modality]]`` table validated by the class of its kind: ``(feature, [])``, or
    ``(None, problems)`` with each problem located (``where`` = ``modality[2] (tags)``)."""
    if not isinstance(entry, dict):
        return None, [f"{where}: must be a table (found {entry!r})"]
    kinds = ", ".join(feature_kinds())
    if "kind" not in entry:
        return None, [f"{where}.kind: Field required (one of {kinds})"]
    try:
        cls = feature_class(entry["kind"])
    except (KeyError, TypeError):
        return None, [f"{where}.kind: unknown kind {entry['kind']!r} (expected one of {kinds})"]
    try:
        return cls.model_validate(entry), []
    except ValidationError as err:
        fields = list(cls.model_fields)
        return None, [
            f"{where}{'.' + location(e['loc']) if e['loc'] else ''}: {describe_problem(e, fields)}"
            for e in err.errors()
        ]


def parse_schema(raw: dict, source: str = "<schema>") -> FeatureSchema:
    """Validate a schema given as a dict (e.g. inline in a run config).

    Raises:
        SchemaError: listing every problem with its location.
    """
    if not isinstance(raw, dict):
        raise SchemaError(source, [f"(top level): must be a table (found {type(raw).__name__})"])
    problems: list[str] = []
    entries = raw.get("modality")
    entries = list(entries) if isinstance(entries, tuple) else entries
    top = dict(raw)
    if isinstance(entries, list):
        names = [e.get("name") for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
        for name, count in sorted(Counter(names).items()):
            if count > 1:
                problems.append(f"modality name '{name}' is declared {count} times (names must be unique)")
        features, entry_problems = [], []
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            feature, found = parse_modality(entry, f"modality[{i}]" + (f" ({name})" if isinstance(name, str) else ""))
            features += [feature] if feature is not None else []
            entry_problems += found
        top["modality"] = features
    try:
        schema = FeatureSchema.model_validate(top)
    except ValidationError as err:
        for e in err.errors():
            if isinstance(entries, list) and entries and e["type"] == "too_short":
                continue  # every table had problems of its own, listed below
            problems.append(
                f"{location(e['loc']) or '(top level)'}: {describe_problem(e, list(FeatureSchema.model_fields))}"
            )
        schema = None
    if isinstance(entries, list):
        problems.extend(entry_problems)
    if schema is not None:
        problems.extend(_cross_checks(schema))
    if problems:
        raise SchemaError(source, problems)
    return schema


def _reads_alike(a: BaseFeature, b: BaseFeature) -> bool:
    """Two modalities can share a column when they fit it the same way (e.g. an id sequence
    and an id set view of one list of ids)."""
    return all(getattr(type(a), name) is getattr(type(b), name) for name in ("fit_view", "fit_dtype", "accepts"))


def _cross_checks(schema: FeatureSchema) -> list[str]:
    problems = []
    if schema.id_column:
        for m in schema.modality:
            if schema.id_column in m.source_columns():
                problems.append(f"modality '{m.name}' reads the id column '{schema.id_column}'")
    readers: dict = {}
    for m in schema.modality:
        for column in m.source_columns():
            first = readers.setdefault(column, m)
            if first.name != m.name and not _reads_alike(first, m):  # a repeated name is reported as such
                problems.append(
                    f"column '{column}' is read by modality '{first.name}' ({first.kind}) and '{m.name}' ({m.kind}): "
                    "one column holds one kind of value"
                )
    return problems


def load_schema(path: str | Path) -> FeatureSchema:
    """Read and validate a schema TOML file.

    Raises:
        SchemaError: for a missing file, a TOML syntax error, or any schema problem (all listed).
    """
    path = os.fspath(path)
    try:
        text = storage.read_text(path)  # a local file or a URI (s3://...)
    except (OSError, ValueError) as err:
        raise SchemaError(str(path), [f"cannot read schema file: {getattr(err, 'strerror', None) or err}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SchemaError(str(path), [f"TOML syntax error: {err}"]) from None
    return parse_schema(raw, str(path))
