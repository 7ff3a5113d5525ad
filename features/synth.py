"""Generator of the "recsys-6" reference workload (docs/design.md): Parquet, schema.toml, truth.json.

    >>> from deepsets.features import synth
    >>> summary = synth.generate(1_000, "/tmp/recsys6", seed=0, progress=False)  # doctest: +SKIP
    >>> summary["files"]                                                          # doctest: +SKIP
    ['part-00000.parquet']

Rows are written in chunks of ``chunk_rows`` (one Parquet row group each), so memory stays flat
however many rows are asked for. Chunk ``c`` (counted across files) is drawn from
``np.random.default_rng([seed, c])`` and the fixed tables from ``np.random.default_rng(seed)``, so
the same ``(rows, seed, rows_per_file, chunk_rows)`` always gives the same values. Labels come from
planted per-modality signals (`deepsets.features.synth_signals`); truth.json records the planted truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from deepsets.features import synth_signals as sig
from deepsets.features.synth_signals import MODALITIES, PRESENCE, WEIGHTS, SynthTables, make_tables

__all__ = ["SCHEMA", "SCHEMA_TOML", "generate", "make_tables", "presence", "read_parts", "signals", "truth"]

presence = sig.presence
signals = sig.signals

QUERY_MIN, QUERY_MAX = 10, 50
HISTORY_EMPTY = 0.2  # share of the rows missing a history that hold an empty list instead of null

SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("query_id", pa.int64(), nullable=False),
        pa.field("image", pa.list_(pa.float32())),
        pa.field("title", pa.list_(pa.float32())),
        pa.field("history", pa.list_(pa.int64())),
        pa.field("frames", pa.list_(pa.list_(pa.float32(), sig.FRAME_DIM))),
        pa.field("tags", pa.list_(pa.int64())),
        pa.field("country", pa.string()),
        *[pa.field(f"profile_{j}", pa.float64()) for j in range(sig.NUM_PROFILE)],
        pa.field("clicked", pa.int8(), nullable=False),
        pa.field("labels", pa.list_(pa.int8(), len(sig.LABEL_RATES)), nullable=False),
    ]
)

SCHEMA_TOML = """\
# Reference workload "recsys-6" (see docs/design.md). One [[modality]] table per modality.
id_column = "item_id"

[[modality]]
name = "image"
kind = "dense"
dim = 256

[[modality]]
name = "title"
kind = "dense"
dim = 384

[[modality]]
name = "history"
kind = "id_sequence"
max_len = 200
truncate = "keep_last"
max_size = 50000
min_count = 10  # rarer items share the out-of-vocabulary row: too few clicks to learn, easy to memorize

[[modality]]
name = "frames"
kind = "dense_sequence"
dim = 64
max_len = 32

[[modality]]
name = "tags"
kind = "id_set"
max_size = 1000

[[modality]]
name = "country"
kind = "categorical"

[[modality]]
name = "profile"
kind = "numeric"
columns = ["profile_0", "profile_1", "profile_2", "profile_3", "profile_4", "profile_5", "profile_6", "profile_7"]
"""


def _list(lengths: np.ndarray, values: pa.Array, null: np.ndarray) -> pa.ListArray:
    """List array from per-row lengths (0 under nulls) and the flat child values."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(null))


def _query_ids(rng: np.random.Generator, n: int, state: list[int]) -> np.ndarray:
    """Query ids of the next n rows; state = [next query id, rows left in the open query]."""
    next_id, left = state
    head = min(left, n)
    sizes = rng.integers(QUERY_MIN, QUERY_MAX + 1, size=n // QUERY_MIN + 1)
    ends = np.cumsum(sizes)
    used = n - head
    opened = int(np.searchsorted(ends, used)) + 1 if used else 0  # queries started in this chunk
    ids = np.concatenate(
        [np.full(head, next_id - 1), np.repeat(np.arange(next_id, next_id + len(sizes)), sizes)[:used]]
    )
    state[:] = [next_id + opened, int(ends[opened - 1]) - used if used else left - head]
    return ids


def _distinct_tags(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, TAGS_MAX) tag ids, distinct within each row, in random order."""
    cand = rng.integers(0, sig.NUM_TAGS, size=(m, sig.TAGS_MAX))
    while True:
        srt = np.sort(cand, axis=1)
        dup = np.any(srt[:, 1:] == srt[:, :-1], axis=1)
        if not dup.any():
            return cand
        cand[dup] = rng.integers(0, sig.NUM_TAGS, size=(int(dup.sum()), sig.TAGS_MAX))


def _features(rng: np.random.Generator, n: int, tables: SynthTables) -> dict[str, pa.Array]:
    """Every modality column of n rows (no ids, no labels)."""
    cols = {}
    present = rng.random(n) < PRESENCE["image"]
    # list<float> rather than fixed_size_list: pyarrow < 26 cannot read back a Parquet
    # fixed_size_list column holding nulls (apache/arrow GH-35692); our reader can.
    image = rng.standard_normal(int(present.sum()) * sig.IMAGE_DIM, dtype=np.float32)
    cols["image"] = _list(present * sig.IMAGE_DIM, pa.array(image), ~present)

    present = rng.random(n) < PRESENCE["title"]
    title = rng.standard_normal(int(present.sum()) * sig.TITLE_DIM, dtype=np.float32)
    cols["title"] = _list(present * sig.TITLE_DIM, pa.array(title), ~present)

    present = rng.random(n) < PRESENCE["history"]
    empty = ~present & (rng.random(n) < HISTORY_EMPTY)
    lengths = np.rint(rng.lognormal(sig.HISTORY_MU, sig.HISTORY_SIGMA, n))
    lengths = np.where(present, np.clip(lengths, 1, sig.HISTORY_MAX), 0).astype(np.int64)
    ranks = np.searchsorted(tables.item_cdf, rng.random(int(lengths.sum())), side="right")
    ids = tables.item_perm[np.minimum(ranks, sig.NUM_ITEMS - 1)].astype(np.int64)
    cols["history"] = _list(lengths, pa.array(ids), ~present & ~empty)

    present = rng.random(n) < PRESENCE["frames"]
    counts = np.where(present, rng.integers(1, sig.FRAMES_MAX + 1, n), 0)
    frames = rng.standard_normal(int(counts.sum()) * sig.FRAME_DIM, dtype=np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(frames), sig.FRAME_DIM)
    cols["frames"] = _list(counts, inner, ~present)

    present = rng.random(n) < PRESENCE["tags"]
    counts = np.where(present, rng.integers(1, sig.TAGS_MAX + 1, n), 0)
    cand = _distinct_tags(rng, n)
    keep = np.arange(sig.TAGS_MAX) < counts[:, None]  # row-major: keeps the row order
    cols["tags"] = _list(counts, pa.array(cand[keep].astype(np.int64)), ~present)

    present = rng.random(n) < PRESENCE["country"]
    codes = np.searchsorted(tables.country_cdf, rng.random(n), side="right")
    codes = np.minimum(codes, sig.NUM_COUNTRIES - 1)
    names = pa.array([f"C{c:03d}" for c in range(sig.NUM_COUNTRIES)], pa.string())
    cols["country"] = pc.take(names, pa.array(codes, mask=~present))

    present = rng.random(n) < PRESENCE["profile"]
    raw = tables.profile_mean + tables.profile_scale * rng.standard_normal((n, sig.NUM_PROFILE))
    raw[rng.random((n, sig.NUM_PROFILE)) < sig.PROFILE_NAN] = np.nan  # NaN, not null
    for j in range(sig.NUM_PROFILE):
        cols[f"profile_{j}"] = pa.array(raw[:, j], mask=~present)
    return cols


def _chunk(rng: np.random.Generator, start: int, n: int, tables: SynthTables, query: list[int]) -> pa.Table:
    """One chunk of n rows starting at row `start`, in SCHEMA order."""
    cols = {
        "item_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "query_id": pa.array(_query_ids(rng, n, query).astype(np.int64)),
    }
    cols.update(_features(rng, n, tables))
    s = signals(pa.table(cols), tables)
    logit = tables.bias + sum(WEIGHTS[m] * s[m] for m in MODALITIES)
    cols["clicked"] = pa.array((rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8))
    score = np.stack([s[m] for m in MODALITIES], axis=1) @ tables.mixing.T  # (n, 5)
    score += sig.LABEL_NOISE * rng.standard_normal(score.shape)
    labels = (score > tables.thresholds).astype(np.int8).ravel()
    cols["labels"] = pa.FixedSizeListArray.from_arrays(pa.array(labels), len(sig.LABEL_RATES))
    return pa.Table.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def truth(tables: SynthTables, rows: int) -> dict:
    """The planted truth written to truth.json.

    Args:
        tables: the fixed tables of the seed.
        rows: number of rows generated.

    Returns:
        A JSON-serializable dict; "ranking" sorts modalities by contribution, largest first.
    """
    contribution = {m: round(WEIGHTS[m] * PRESENCE[m], 6) for m in MODALITIES}
    return {
        "seed": tables.seed,
        "rows": rows,
        "bias": tables.bias,
        "weights": {m: WEIGHTS[m] for m in MODALITIES},
        "presence": {m: PRESENCE[m] for m in MODALITIES},
        "contribution": contribution,
        "ranking": sorted(MODALITIES, key=lambda m: -contribution[m]),
        "multilabel_modalities": list(MODALITIES),
        "multilabel_mixing": tables.mixing.round(6).tolist(),
        "multilabel_thresholds": tables.thresholds.round(6).tolist(),
        "multilabel_target_rates": list(sig.LABEL_RATES),
        "description": (
            "clicked ~ Bernoulli(sigmoid(bias + sum_m weight_m * s_m)), where s_m is a per-row "
            "signal of modality m standardized to mean 0 and std 1 over the rows where m is "
            "present, and exactly 0 where m is missing (null or empty list). A missing modality "
            "therefore contributes 0, and contribution = weight x presence rate x std(signal) "
            "with std(signal) = 1. labels[k] = 1 if sum_m mixing[k][m] * s_m + "
            f"{sig.LABEL_NOISE} * noise > threshold_k."
        ),
    }


def generate(
    rows: int,
    out_dir: str | Path,
    seed: int = 0,
    rows_per_file: int = 200_000,
    chunk_rows: int = 20_000,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> dict:
    """Write `rows` rows of the recsys-6 workload as Parquet parts plus schema.toml and truth.json.

    Args:
        rows: total number of rows, >= 1.
        out_dir: output folder; created if needed.
        seed: workload seed (fixed tables and every chunk derive from it).
        rows_per_file: rows per part-NNNNN.parquet file, >= 1.
        chunk_rows: rows per Parquet row group (and per in-memory chunk), >= 1.
        progress: show a tqdm progress bar on stderr (only when stderr is a terminal).
        overwrite: delete existing part files in out_dir instead of refusing.

    Returns:
        {"rows": rows, "files": [part file names], "out_dir": str, "seconds": float}.

    Raises:
        ValueError: if an argument is out of range, or out_dir already holds part files and
            overwrite is False.
    """
    sizes = {"rows": rows, "rows_per_file": rows_per_file, "chunk_rows": chunk_rows}
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob("part-*.parquet"))
    if old and not overwrite:
        raise ValueError(
            f"{out} already holds {len(old)} part file(s) (first: {old[0].name}); "
            "pass --overwrite (overwrite=True from Python) to replace them"
        )
    for path in old:
        path.unlink()
    tables = make_tables(seed)
    files, chunk_index, query = [], 0, [0, 0]
    with tqdm(total=rows, unit="row", disable=None if progress else True) as bar:
        for file_start in range(0, rows, rows_per_file):
            name = f"part-{len(files):05d}.parquet"
            file_end = min(file_start + rows_per_file, rows)
            with pq.ParquetWriter(out / name, SCHEMA) as writer:
                for start in range(file_start, file_end, chunk_rows):
                    n = min(chunk_rows, file_end - start)
                    rng = np.random.default_rng([seed, chunk_index])
                    writer.write_table(_chunk(rng, start, n, tables, query))
                    chunk_index += 1
                    bar.update(n)
            files.append(name)
    (out / "schema.toml").write_text(SCHEMA_TOML)
    (out / "truth.json").write_text(json.dumps(truth(tables, rows), indent=2) + "\n")
    return {"rows": rows, "files": files, "out_dir": str(out), "seconds": time.perf_counter() - t0}


def read_parts(out_dir: str | Path) -> pa.Table:
    """Read every part file of `out_dir` into one table with exactly SCHEMA's types.

    Reads with polars (as the feature reader does). Meant for tests and small inspections.

    Args:
        out_dir: a folder written by `generate`.

    Returns:
        All rows, in part-file order.

    Raises:
        FileNotFoundError: if out_dir holds no part files.
    """
    files = sorted(Path(out_dir).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no part-*.parquet files in {out_dir}")
    return pl.read_parquet(files).to_arrow().cast(SCHEMA)
