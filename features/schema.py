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

import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.errors import SchemaError
from features.kinds.categorical import CategoricalFeature
from features.kinds.dense import DenseFeature
from features.kinds.dense_sequence import DenseSequenceFeature
from features.kinds.id_sequence import IdSequenceFeature
from features.kinds.id_set import IdSetFeature
from features.kinds.numeric import NumericFeature

ModalityConfig = Annotated[
    Union[DenseFeature, DenseSequenceFeature, IdSequenceFeature, IdSetFeature, CategoricalFeature, NumericFeature],
    Field(discriminator="kind"),
]


class FeatureSchema(BaseModel):
    """The declared modalities of a dataset and its optional id column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: Optional[str] = None
    modality: List[ModalityConfig] = Field(min_length=1)

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


def _location(loc: tuple, raw: dict) -> str:
    """'modality[2] (tags).max_len' from a pydantic error location."""
    parts: list[str] = []
    items = loc
    if len(items) >= 2 and items[0] == "modality" and isinstance(items[1], int):
        entry = raw.get("modality", [])
        name = entry[items[1]].get("name") if items[1] < len(entry) and isinstance(entry[items[1]], dict) else None
        parts.append(f"modality[{items[1]}]" + (f" ({name})" if name else ""))
        # pydantic inserts the union tag ('dense', ...) after the index: drop it.
        items = items[2:]
        if items and isinstance(items[0], str) and items[0] in _KIND_TAGS:
            items = items[1:]
    for item in items:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts).lstrip(".") or "(top level)"


_KIND_TAGS = {"dense", "dense_sequence", "id_sequence", "id_set", "categorical", "numeric"}


def _readable(e: dict) -> tuple[tuple, str]:
    """A pydantic error as (location, message) a schema author can act on, with the value found."""
    loc, msg, kind = tuple(e["loc"]), e["msg"], e["type"]
    if kind == "union_tag_invalid":  # pydantic words this as 'Input tag ... discriminator ...'
        return loc + ("kind",), f"unknown kind '{e['ctx']['tag']}' (expected one of {', '.join(sorted(_KIND_TAGS))})"
    if kind == "union_tag_not_found":
        return loc + ("kind",), f"Field required (one of {', '.join(sorted(_KIND_TAGS))})"
    msg = msg.removeprefix("Value error, ")
    found = e.get("input")
    if kind not in ("missing", "extra_forbidden") and isinstance(found, (int, float, str)):
        msg += f" (found {found!r})"
    return loc, msg


def parse_schema(raw: dict, source: str = "<schema>") -> FeatureSchema:
    """Validate a schema given as a dict (e.g. inline in a run config).

    Raises:
        SchemaError: listing every problem with its location.
    """
    problems: list[str] = []
    entries = raw.get("modality", []) if isinstance(raw, dict) else []
    if isinstance(entries, list):
        names = [e.get("name") for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
        for name, count in sorted(Counter(names).items()):
            if count > 1:
                problems.append(f"modality name '{name}' is declared {count} times (names must be unique)")
    try:
        schema = FeatureSchema.model_validate(raw)
    except ValidationError as err:
        for e in err.errors():
            loc, msg = _readable(e)
            problems.append(f"{_location(loc, raw)}: {msg}")
        raise SchemaError(source, problems) from None
    problems.extend(_cross_checks(schema))
    if problems:
        raise SchemaError(source, problems)
    return schema


def _cross_checks(schema: FeatureSchema) -> list[str]:
    problems = []
    if schema.id_column:
        for m in schema.modality:
            if schema.id_column in m.source_columns():
                problems.append(f"modality '{m.name}' reads the id column '{schema.id_column}'")
    return problems


def load_schema(path: str | Path) -> FeatureSchema:
    """Read and validate a schema TOML file.

    Raises:
        SchemaError: for a missing file, a TOML syntax error, or any schema problem (all listed).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SchemaError(str(path), [f"cannot read schema file: {err.strerror or err}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SchemaError(str(path), [f"TOML syntax error: {err}"]) from None
    return parse_schema(raw, str(path))
