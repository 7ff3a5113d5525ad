"""The label side of ``deepsets init``: the task guessed from the label's values, and the columns
that leak the label (left out of the schema).

A column leaks when (checked on the first sampled rows, :data:`MIN_SAMPLE` of them at least, for
the value rules):

* its name is the label's plus words of :data:`LEAK_WORDS` (``clicked_score``, ``pred_clicked``);
* it equals the label on every sampled row;
* the label has at most :data:`MAX_CLASSES` values and the column takes one value per label value
  (it encodes the label), with two values or more;
* it is a number whose correlation with a numeric label is beyond :data:`LINEAR` in size.
"""

from __future__ import annotations

from typing import Optional, Tuple

import polars as pl
import pyarrow as pa

from deepsets.features.errors import DataError
from deepsets.pipelines.init.profile import ColumnProfile, TableProfile

LEAK_WORDS = frozenset(
    {
        "score",
        "scores",
        "prob",
        "proba",
        "probability",
        "pred",
        "preds",
        "prediction",
        "predicted",
        "logit",
        "logits",
        "label",
        "target",
        "true",
        "actual",
        "copy",
        "raw",
        "orig",
        "original",
        "y",
    }
)
MIN_SAMPLE = 50
MAX_CLASSES = 100  # whole-number labels with at most this many values are classes
LINEAR = 0.999


def _tokens(name: str) -> list[str]:
    return [t for t in name.lower().replace("-", "_").split("_") if t]


def name_leak(column: str, label: str) -> Optional[str]:
    """Why ``column``'s name says it is the label's score or copy, or None."""
    words, label_words = _tokens(column), _tokens(label)
    n = len(label_words)
    for at in range(len(words) - n + 1):
        if words[at : at + n] == label_words:
            rest = words[:at] + words[at + n :]
            if rest and set(rest) <= LEAK_WORDS:
                return f"its name is the label's plus '{'_'.join(rest)}': a score or copy of the label"
    return None


def value_leak(column: str, label: str, sample: pa.Table) -> Optional[str]:
    """Why ``column``'s values on the sampled rows give the label away, or None."""
    if column not in sample.column_names or label not in sample.column_names:
        return None
    frame = pl.from_arrow(sample.select([label, column])).filter(pl.col(label).is_not_null())
    rows = frame.height
    if rows < MIN_SAMPLE:
        return None
    x, y = frame[column], frame[label]
    numeric = x.dtype.is_numeric() or x.dtype == pl.Boolean
    if numeric and x.null_count() == 0 and (x.cast(pl.Float64) == y.cast(pl.Float64)).all():
        return f"equals the label on all {rows:,} sampled rows"
    if y.n_unique() <= MAX_CLASSES:
        per_label = frame.group_by(label).agg(pl.col(column).n_unique().alias("n"))["n"].max()
        if per_label == 1 and x.n_unique() >= 2:
            return f"takes one value per label value on all {rows:,} sampled rows: it encodes the label"
        return None
    if numeric and x.null_count() == 0:
        r = frame.select(pl.corr(pl.col(column).cast(pl.Float64), pl.col(label).cast(pl.Float64))).item()
        if r is not None and abs(r) >= LINEAR:
            return f"a linear function of the label (correlation {r:.4f} on {rows:,} sampled rows)"
    return None


def guess_task(table: TableProfile, label: str) -> Tuple[str, int, str]:
    """``(task kind, num_outputs, why)`` from the label's values: 0 and 1 -> binary; whole
    numbers 0..K-1 (at most :data:`MAX_CLASSES` values) -> multiclass over their largest + 1;
    anything else -> regression.

    Raises:
        DataError: for a label that is not a number, or has fewer than two values.
    """
    p: ColumnProfile = table.columns[label]
    where = {"file": table.files[0], "column": label}
    t = p.arrow_type.value_type if pa.types.is_dictionary(p.arrow_type) else p.arrow_type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise DataError(
            f"the label must be a number column (0/1, class ids or values), found {p.arrow_type}: "
            "map it to numbers first",
            **where,
        )
    counts = p.distinct.counts
    values = sorted(counts) if counts is not None else None
    if p.distinct.count < 2:
        raise DataError(f"the label has {p.distinct.count} distinct value(s): nothing to learn", **where)
    missing = (
        f"; {p.missing:,} rows have no label (null or NaN): training refuses them, filter them out first"
        if p.missing
        else ""
    )
    if pa.types.is_boolean(t) or values == [0, 1]:
        return "binary", 1, f"two values, 0 and 1: binary classification (validation AUC picks the epoch){missing}"
    whole = values is not None and all(float(v).is_integer() for v in values)
    if whole and values[0] >= 0 and len(values) <= MAX_CLASSES and values[-1] < 10 * MAX_CLASSES:
        classes = int(values[-1]) + 1
        two = " (two values but not 0 and 1: map them to 0/1 for a binary task)" if len(values) == 2 else ""
        return (
            "multiclass",
            classes,
            (
                f"{len(values)} whole values in 0..{classes - 1}: multiclass classification over "
                f"{classes} classes{two}{missing}"
            ),
        )
    return (
        "regression",
        1,
        f"{p.distinct.count:,} distinct values: regression (validation RMSE picks the epoch){missing}",
    )
