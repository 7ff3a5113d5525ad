"""Parquet -> model-ready batches of 512: this reader vs the naive tutorial path vs pure decode.

    python -m benchmarks.speed.collate --quick        # 20k rows
    python -m benchmarks.speed.collate --rows 200000

(a) ``ParquetBatchReader``: polars decode + vectorized Arrow/numpy conversion, batches of 512.
(b) naive: ``pq.read_table(...).to_pylist()``, then per row tensors, dict lookups for ids and
    ``torch.nn.utils.rnn.pad_sequence`` per modality (what tutorials teach).
(c) floor: ``pq.read_table`` of the same columns into an Arrow table and nothing more.
All three start from the same Parquet files on disk and run in this one process; each is timed
as the best of ``--repeats`` runs. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import torch
from torch.nn.utils.rnn import pad_sequence

from benchmarks.speed.timing import best_seconds
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec

BATCH = 512


def run_reader(spec: FeatureSpec, files: list[str]) -> int:
    rows = 0
    for batch in ParquetBatchReader(spec, files, batch_size=BATCH, label_columns=["clicked"]):
        rows += batch.num_rows
    return rows


def run_decode(files: list[str], columns: list[str]) -> int:
    return pq.read_table(files, columns=columns).num_rows


def run_decode_polars(files: list[str], columns: list[str]) -> int:
    return pl.read_parquet(files, columns=columns).to_arrow().num_rows


class NaiveCollate:
    """The per-row path: Python lists, dict lookups, pad_sequence. Same outputs in padded form."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.history_vocab = {v: i + 2 for i, v in enumerate(spec.fitted["history"].vocab)}
        self.tags_vocab = {v: i + 2 for i, v in enumerate(spec.fitted["tags"].vocab)}
        self.country_vocab = {v: i + 2 for i, v in enumerate(spec.fitted["country"].vocab)}
        self.mean = spec.fitted["profile"].mean
        self.std = spec.fitted["profile"].std
        self.profile_cols = spec.modality("profile").columns

    def batch(self, chunk: list[dict]) -> dict:
        out = {}
        for name, dim in (("image", 256), ("title", 384)):
            out[name] = torch.tensor([r[name] or [0.0] * dim for r in chunk], dtype=torch.float32)  # (B, dim)
            out[name + "_present"] = torch.tensor([bool(r[name]) for r in chunk])
        hist = [
            torch.tensor([self.history_vocab.get(x, 1) for x in (r["history"] or [])][-200:], dtype=torch.int64)
            for r in chunk
        ]
        out["history"] = pad_sequence(hist, batch_first=True)  # (B, L)
        out["history_len"] = torch.tensor([len(h) for h in hist])
        frames = [torch.tensor(r["frames"] or [], dtype=torch.float32).reshape(-1, 64)[:32] for r in chunk]
        out["frames"] = pad_sequence(frames, batch_first=True)  # (B, L, 64)
        out["frames_len"] = torch.tensor([len(f) for f in frames])
        tags = [
            torch.tensor(sorted(self.tags_vocab.get(x, 1) for x in (r["tags"] or [])), dtype=torch.int64) for r in chunk
        ]
        out["tags"] = pad_sequence(tags, batch_first=True)
        out["tags_len"] = torch.tensor([len(t) for t in tags])
        out["country"] = torch.tensor(
            [0 if r["country"] is None else self.country_vocab.get(r["country"], 1) for r in chunk]
        )
        profile = []
        for r in chunk:
            vals = [r[c] for c in self.profile_cols]
            profile.append(
                [0.0 if v is None or math.isnan(v) else (v - m) / s for v, m, s in zip(vals, self.mean, self.std)]
            )
        out["profile"] = torch.tensor(profile, dtype=torch.float32)
        out["clicked"] = torch.tensor([r["clicked"] for r in chunk], dtype=torch.float32)
        return out

    def run(self, files: list[str], columns: list[str]) -> int:
        rows = pq.read_table(files, columns=columns).to_pylist()
        for start in range(0, len(rows), BATCH):
            self.batch(rows[start : start + BATCH])
        return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 2 repeats")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="reuse a recsys-6 directory (else generated in a temp dir)")
    args = parser.parse_args()
    rows, repeats = (20_000, 2) if args.quick else (args.rows, args.repeats)
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            synth.generate(rows, data, seed=0, progress=False)
        files = sorted(str(p) for p in data.glob("part-*.parquet"))
        spec = FeatureSpec.fit(load_schema(data / "schema.toml"), files, validate=False)
        columns = spec.schema.source_columns() + ["clicked"]
        n = run_reader(spec, files)  # warm-up (and row count)
        naive = NaiveCollate(spec)
        t_reader = best_seconds(lambda: run_reader(spec, files), repeats)
        t_naive = best_seconds(lambda: naive.run(files, columns), 1)
        t_decode = best_seconds(lambda: run_decode(files, columns), repeats)
        t_polars = best_seconds(lambda: run_decode_polars(files, columns), repeats)
    result = {
        "rows": n,
        "rows_per_s": round(n / t_reader),
        "naive_rows_per_s": round(n / t_naive),
        "decode_rows_per_s": round(n / t_decode),
        "polars_decode_rows_per_s": round(n / t_polars),
        "speedup": round(t_naive / t_reader, 2),
        "fraction_of_decode": round(t_decode / t_reader, 3),
        "fraction_of_polars_decode": round(t_polars / t_reader, 3),
        "threads": torch.get_num_threads(),
    }
    print(
        f"reader {result['rows_per_s']:,} rows/s | naive {result['naive_rows_per_s']:,} rows/s | "
        f"pyarrow decode {result['decode_rows_per_s']:,} rows/s | polars decode {result['polars_decode_rows_per_s']:,} rows/s"
    )
    print(
        f"speedup vs naive {result['speedup']}x; fraction of pyarrow decode {result['fraction_of_decode']}; "
        f"of polars decode {result['fraction_of_polars_decode']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
