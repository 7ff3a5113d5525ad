"""Which kind each column of a profiled table becomes, and why (``deepsets init``).

The rules, in order, for each column:

* the label, the id column (``--id``, else a unique int or string column) and leaking columns
  (:mod:`deepsets.pipelines.init.leaks`) are not features;
* a column without any value, or with a single value, is left out;
* ``list<float>`` of one length -> ``dense``; of varying lengths -> ``dense_sequence`` with
  ``dim = 1`` (a sequence of numbers); ``list<list<float>>`` -> ``dense_sequence``, ``dim`` the
  vectors' length (vectors of different lengths are an error naming the rows); a
  ``dense_sequence`` is read as a history, like an id list: positions count back from its last
  element and a cut row keeps its last ones (:data:`HISTORY_SETTINGS`);
* ``list<int|string>`` -> ``id_set`` when no row repeats an id and 95% of rows hold at most
  :data:`SET_MAX_LEN` ids (short and repeat-free: tags), else ``id_sequence`` (order kept, the
  most recent ids when cut);
* a string, or an integer that is an id or a code (at most :data:`INT_CODES` values, or a name
  like ``*_id``), -> ``categorical``; other integers, floats and booleans -> one ``numeric`` modality;
* other types are left out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import pyarrow as pa

from deepsets.features.errors import DataError
from deepsets.pipelines.init.profile import ColumnProfile, DistinctValues, TableProfile

LOW_CARDINALITY = 1000  # at most this many distinct values: a vocabulary of all of them
INT_CODES = 16  # integers with at most this many distinct values are codes (categorical), more are amounts
MAX_HASH_BUCKETS = 1 << 22
ROWS_PER_ID_EXAMPLE = 1000  # min_count: an id needs one sighting per this many training rows for a vector of its own
MAX_MIN_COUNT = 50  # ... and never more than this many
SET_MAX_LEN = 16  # id lists whose p95 length is at most this, with no repeated id in a row, are sets
LENGTH_QUANTILE = 0.95  # max_len covers this share of the rows (rounded up to a multiple of 8)
ID_NAME = re.compile(r"(^|_)(id|key|uuid|idx)$|[a-z0-9]Id$", re.IGNORECASE)

Setting = Tuple[str, Any, str]  # (schema field, value, why)


@dataclass
class Choice:
    """What ``deepsets init`` made of one column.

    ``role`` is ``feature``, ``label``, ``id`` or ``left_out``; a left-out column that could be a
    feature keeps its ``kind`` and ``settings`` (written commented out for the user to take back).
    """

    column: str
    arrow_type: str
    role: str
    reason: str
    kind: str = ""
    settings: List[Setting] = field(default_factory=list)
    warning: str = ""  # what training will refuse in this column as it is

    def settings_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v, _ in self.settings)


def looks_like_id(name: str) -> bool:
    return bool(ID_NAME.search(name))


def percentile(lengths: Counter, q: float) -> int:
    """The nearest-rank ``q`` quantile of the lengths counted in ``lengths`` (0 when empty)."""
    total = sum(lengths.values())
    if not total:
        return 0
    rank, seen = math.ceil(q * total), 0
    for length in sorted(lengths):
        seen += lengths[length]
        if seen >= rank:
            return int(length)
    return int(max(lengths))


HISTORY_SETTINGS: List[Setting] = [
    ("positions", "from_end", "position 0 is the last element (a history's most recent); from_start for frames"),
    ("truncate", "keep_last", "a cut row keeps its last (most recent) elements"),
]
"""What ``init`` writes for a ``dense_sequence``. On the nlswork table of ``benchmarks/tables``
(earlier interviews' wages as vectors) counting from the end took test RMSE from 0.3697 +- 0.016
to 0.3524 +- 0.005 (3 seeds): the last wage is what predicts the next one, and counted from the
start its position differs from row to row."""


def max_len_setting(lengths: Counter, what: str, cut: str) -> Setting:
    """``max_len``: the p95 length rounded up to a multiple of 8 (the longest length when that is
    shorter), with how many rows it cuts."""
    longest, p95 = int(max(lengths)), percentile(lengths, LENGTH_QUANTILE)
    max_len = min(longest, max(8, -(-p95 // 8) * 8))
    over = sum(n for length, n in lengths.items() if length > max_len)
    present = sum(lengths.values())
    if not over:
        return "max_len", max_len, f"the longest row holds {longest} {what}: nothing is cut"
    return (
        "max_len",
        max_len,
        (
            f"p95 of the lengths is {p95}, rounded up; {over} of {present} rows ({over / present:.1%}) "
            f"are longer (up to {longest}) and keep their {cut} {max_len}"
        ),
    )


def min_count_for(rows: int) -> int:
    """The fewest rows an id must be seen in to get a vector of its own: one per
    :data:`ROWS_PER_ID_EXAMPLE` training rows, within 2..:data:`MAX_MIN_COUNT`. An id seen in a
    handful of rows has its vector fitted to those rows' labels (memorized, not learned): on
    the real tables of ``benchmarks/tables`` a 10,000-word title vocabulary kept from two
    sightings cost 0.05 test AUC against one kept from fifty."""
    return max(2, min(MAX_MIN_COUNT, -(-rows // ROWS_PER_ID_EXAMPLE)))


def id_mapping(distinct: DistinctValues, what: str, rows: int) -> Tuple[List[Setting], str]:
    """How ids are mapped: a vocabulary of all of them, of those seen often enough
    (:func:`min_count_for` the table's ``rows``), or hashing."""
    n = distinct.count
    if distinct.counts is None:
        buckets = min(MAX_HASH_BUCKETS, 1 << math.ceil(math.log2(n)))
        return [
            (
                "hash_buckets",
                buckets,
                f"{n:,} distinct {what}, more than {distinct.cap:,}: hashed, no vocabulary to fit or ship",
            )
        ], f"{n:,} distinct {what}, hashed"
    if n <= LOW_CARDINALITY:
        return [], f"{n:,} distinct {what}: a vocabulary of all of them"
    least = min_count_for(rows)
    total = sum(distinct.counts.values())
    kept = [c for c in distinct.counts.values() if c >= least]
    covered = sum(kept) / total if total else 0.0
    why = (
        f"{n:,} distinct {what}; the {len(kept):,} seen at least {least} times ({covered:.0%} of occurrences) get a vector "
        f"of their own, the rarer ones share the out-of-vocabulary vector (one per {ROWS_PER_ID_EXAMPLE:,} of the "
        f"{rows:,} rows, within 2..{MAX_MIN_COUNT}: fewer sightings are memorized, not learned)"
    )
    return [("min_count", least, why)], f"{n:,} distinct {what}, vocabulary of those seen {least} times or more"


def type_name(t: pa.DataType) -> str:
    """An Arrow type as a person writes it: ``list<list<float>>``, not ``list<element: list<element: float>>``."""
    return re.sub(r"\b(element|item): ", "", str(t))


def _left_out(p: ColumnProfile, reason: str) -> Choice:
    return Choice(p.name, type_name(p.arrow_type), "left_out", reason)


def _feature(p: ColumnProfile, kind: str, reason: str, settings: Optional[List[Setting]] = None) -> Choice:
    return Choice(p.name, type_name(p.arrow_type), "feature", reason, kind, settings or [])


def _scalar(p: ColumnProfile) -> Choice:
    if p.shape == "number":
        if p.low == p.high:
            return _left_out(p, f"a single value ({p.low:g}) in every row: nothing to learn")
        what = "booleans (as 0/1)" if pa.types.is_boolean(p.arrow_type) else "floats"
        return _feature(p, "numeric", f"{what}: a number")
    n = p.distinct.count
    if n == 1:
        return _left_out(p, "a single value in every row: nothing to learn")
    integer = p.low is not None
    if integer and p.low < 0:
        return _feature(
            p, "numeric", f"integers with negative values ({p.low:g}..{p.high:g}): an amount (ids are >= 0)"
        )
    if integer and n > INT_CODES and not looks_like_id(p.name):
        return _feature(
            p,
            "numeric",
            f"{n:,} distinct integers ({p.low:g}..{p.high:g}): an amount, not a code "
            f"(codes have at most {INT_CODES} values or an id-like name)",
        )
    settings, summary = id_mapping(p.distinct, "values", p.rows)
    why = f"{'integer codes' if integer else 'strings'}: {summary}"
    if integer and n <= INT_CODES:
        why += f' (at most {INT_CODES} values: codes, not amounts; kind = "numeric" if their order matters)'
    return _feature(p, "categorical", why, settings)


def _float_list(p: ColumnProfile) -> Choice:
    t = p.arrow_type
    fixed = t.list_size if pa.types.is_fixed_size_list(t) else None
    if fixed is not None or len(p.lengths) == 1:
        dim = fixed or int(next(iter(p.lengths)))
        return _feature(
            p,
            "dense",
            f"every present row holds {dim} floats: one vector",
            [("dim", dim, f"every present row holds {dim} floats")],
        )
    low, high = min(p.lengths), max(p.lengths)
    return _feature(
        p,
        "dense_sequence",
        f"lists of {low}..{high} floats: a sequence of numbers, read as vectors of one",
        [("dim", 1, "one number per step"), max_len_setting(p.lengths, "numbers", "last"), *HISTORY_SETTINGS],
    )


def check_vectors(p: ColumnProfile) -> int:
    """The one length of a ``list<list<float>>`` column's vectors.

    Raises:
        DataError: when the vectors have different lengths (or some are null), naming example
            rows of the rarer lengths.
    """
    inner = p.arrow_type.value_type
    if pa.types.is_fixed_size_list(inner) and None not in p.inner_lengths:
        return inner.list_size
    if len(p.inner_lengths) == 1 and None not in p.inner_lengths:
        return int(next(iter(p.inner_lengths)))
    by_count = sorted(p.inner_lengths.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or 0))
    usual = by_count[0][0]
    found = ", ".join(f"{n:,} vector(s) of {'null' if k is None else f'{k} floats'}" for k, n in by_count)
    examples = [ex for k, _ in by_count[1:] for ex in p.inner_examples[k]]
    path = examples[0][0]
    rows = sorted({r for f, r in examples if f == path})
    raise DataError(
        f"a dense_sequence needs every vector to hold the same number of floats; found {found} "
        f"(the rows named hold vectors of other than {usual} floats): make them one length, or split the column",
        file=path,
        column=p.name,
        rows=rows,
    )


def _vector_list(p: ColumnProfile) -> Choice:
    dim = check_vectors(p)
    return _feature(
        p,
        "dense_sequence",
        f"lists of {dim}-float vectors: a sequence of vectors",
        [
            ("dim", dim, f"every vector holds {dim} floats"),
            max_len_setting(p.lengths, "vectors", "last"),
            *HISTORY_SETTINGS,
        ],
    )


def _id_list(p: ColumnProfile) -> Choice:
    if p.low is not None and p.low < 0:
        return _left_out(
            p,
            f"lists of integers with negative values ({p.low:g}): not ids (ids are >= 0); "
            "as floats they would be a dense_sequence",
        )
    p95 = percentile(p.lengths, LENGTH_QUANTILE)
    settings, summary = id_mapping(p.distinct, "ids", p.rows)
    if p.repeat_rows == 0 and p95 <= SET_MAX_LEN:
        why = f"no row repeats an id and p95 length is {p95} (<= {SET_MAX_LEN}): short and repeat-free, a set (tags); {summary}"
        kind, cut = "id_set", "most frequent"
    else:
        shape = f"{p.repeat_rows:,} rows repeat an id" if p.repeat_rows else f"p95 length {p95} (> {SET_MAX_LEN})"
        why = (
            f"{shape}: a history, order kept (id_sequence is the default for id lists; "
            f"id_set when no row repeats an id and p95 length <= {SET_MAX_LEN}); {summary}"
        )
        kind, cut = "id_sequence", "last (most recent)"
    return _feature(p, kind, why, [max_len_setting(p.lengths, "ids", cut), *settings])


def choose_kind(p: ColumnProfile) -> Choice:
    """The kind and settings of a column that is neither label, id nor a leak, with a warning
    when some rows hold values training refuses (NaN, infinite or null floats in a vector, an
    infinite number).

    Raises:
        DataError: for a ``list<list<float>>`` column with vectors of different lengths.
    """
    choice = _kind_of(p)
    if choice.role == "feature" and p.bad_rows:
        path, row = p.bad_examples[0]
        what = "an infinite value" if p.shape == "number" else "NaN, infinite or null floats"
        choice.warning = (
            f"{p.bad_rows:,} rows hold {what}, which training refuses (first: {path}, row {row}): "
            "fix them, or make those rows null (missing)"
        )
    return choice


def _kind_of(p: ColumnProfile) -> Choice:
    if p.present == 0:
        return _left_out(p, "no value in any row")
    if p.shape in ("ids", "number"):
        return _scalar(p)
    if p.shape == "float_list":
        return _float_list(p)
    if p.shape == "vector_list":
        return _vector_list(p)
    if p.shape == "id_list":
        return _id_list(p)
    return _left_out(p, f"no kind reads {p.arrow_type} (convert it, e.g. a timestamp to numbers, to use it)")


def id_candidates(table: TableProfile) -> List[str]:
    """Columns unique in every row: strings, and integers with an id-like name or numbering the
    rows (``max - min + 1 == rows``); id-like names first."""
    found = []
    for p in table.columns.values():
        if p.shape != "ids" or p.missing or p.rows < 2 or p.distinct.count != p.rows:
            continue
        integer = p.low is not None
        if not integer or looks_like_id(p.name) or p.high - p.low + 1 == p.rows:
            found.append(p.name)
    return sorted(found, key=lambda c: not looks_like_id(c))
