"""``deepsets demo``: the main job on embedded defaults, end to end on a small reference workload.

Today: generate the recsys-6 workload, fit the feature spec, read every row back as batches.
(Training, embedding and ablation join this recipe as they land.)
"""

from __future__ import annotations

import os
import time

from features import synth
from features.reader import ParquetBatchReader, describe_counts
from features.schema import load_schema
from features.spec import FeatureSpec
from pipelines.report import describe_batch, format_stats


def run_demo(out_dir: str = "demo_output", rows: int = 20_000, seed: int = 0, quiet: bool = False) -> dict:
    """Run the demo and return its summary.

    Args:
        out_dir: working directory (data under ``data/``, spec at ``spec.json``).
        rows: rows of synthetic data.
        seed: generator seed.
        quiet: print nothing but errors (the caller prints JSON).
    """
    say = (lambda *a: None) if quiet else print
    started = time.perf_counter()
    data_dir = os.path.join(out_dir, "data")
    say(f"[1/3] generating {rows} rows of the recsys-6 workload into {data_dir}")
    generated = synth.generate(rows, data_dir, seed=seed, overwrite=True, progress=not quiet)
    say(f"[2/3] fitting the feature spec on {data_dir}")
    spec = FeatureSpec.fit(load_schema(os.path.join(data_dir, "schema.toml")), data_dir, progress=not quiet)
    spec_path = os.path.join(out_dir, "spec.json")
    spec.save(spec_path)
    say(format_stats(spec.stats()))
    say(f"[3/3] reading every row back in batches of 512")
    reader = ParquetBatchReader(spec, data_dir, batch_size=512, label_columns=["clicked", "labels"], progress=not quiet)
    batches, first = 0, None
    for batch in reader:
        batch.validate()
        first = first if first is not None else batch
        batches += 1
    counts = describe_counts(reader.counts)
    say(describe_batch(first))
    cut = {name: c["truncated_rows"] for name, c in counts.items() if c["truncated_rows"]}
    say(f"rows cut to max_len (counted, not hidden): {cut or 'none'}")
    seconds = time.perf_counter() - started
    say(f"demo done in {seconds:.1f} s: {reader.rows_read} rows, {batches} batches; spec at {spec_path}")
    return {
        "data": {"rows": generated["rows"], "files": len(generated["files"]), "dir": data_dir},
        "spec": spec_path,
        "read": {"rows": reader.rows_read, "batches": batches, "counts": counts},
        "seconds": round(seconds, 2),
    }
