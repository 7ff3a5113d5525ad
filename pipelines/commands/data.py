"""The data commands: ``synth``, ``init``, ``fit`` and ``read``.

The flags of ``init`` and ``fit`` are the fields of :class:`InitConfig` and :class:`FitConfig`
(``add_config_flags``), declared there once with their defaults and help.
"""

from __future__ import annotations

import os

from deepsets.pipelines.commands.config_flags import add_config_flags, config_values
from deepsets.pipelines.commands.options import JSON_HELP
from deepsets.pipelines.fitting import FitConfig, parse_fit_config, run_fit
from deepsets.pipelines.init.config import InitConfig, parse_init_config
from deepsets.pipelines.report import describe_batch, format_stats


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the recsys-6 reference workload (Parquet + schema.toml + truth.json)")
    p.add_argument("--rows", type=int, required=True, help="number of rows")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated rows")
    p.add_argument("--rows-per-file", type=int, default=200_000, help="rows per Parquet part file")
    p.add_argument("--overwrite", action="store_true", help="replace part files already in --out")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_synth)


def _run_synth(args) -> dict:
    from deepsets.features import synth

    summary = synth.generate(
        args.rows, args.out, seed=args.seed, rows_per_file=args.rows_per_file, overwrite=args.overwrite, progress=True
    )
    if not args.json:
        print(
            f"wrote {summary['rows']} rows in {len(summary['files'])} file(s) to {summary['out_dir']} "
            f"({summary['seconds']:.1f} s); schema: {os.path.join(summary['out_dir'], 'schema.toml')}"
        )
    return summary


def _add_init(sub) -> None:
    p = sub.add_parser(
        "init", help="write schema.toml and run.toml for a new table, each choice explained (one pass over the data)"
    )
    add_config_flags(p, InitConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_init)


def _run_init(args) -> dict:
    from deepsets.pipelines.init.job import run_init
    from deepsets.pipelines.init.writing import format_choices

    summary = run_init(parse_init_config(**config_values(args, InitConfig)), progress=not args.json)
    if not args.json:
        print(format_choices(summary["choices"]))
        for c in summary["choices"]:
            if c.warning:
                print(f"warning: column '{c.column}': {c.warning}")
        task = summary["task"]
        print(f"task: {task['kind']} ({task['reason']})")
        print(
            f"wrote {summary['schema']} and {summary['run_config']}; check them, then: deepsets train --config {summary['run_config']}"
        )
    summary.pop("choices")
    return summary


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit a feature spec (vocabularies, normalization, stats) on training Parquet")
    add_config_flags(p, FitConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_fit)


def _run_fit(args) -> dict:
    cfg = parse_fit_config(**config_values(args, FitConfig))
    stats = run_fit(cfg, progress=True).stats()
    if not args.json:
        print(format_stats(stats))
        print(f"spec written to {cfg.out}")
    return {"spec": cfg.out, "stats": stats}


def _add_read(sub) -> None:
    p = sub.add_parser("read", help="read Parquet through a fitted spec into batches and report counts")
    p.add_argument("--spec", required=True, help="spec JSON written by `deepsets fit`")
    p.add_argument("--input", required=True, nargs="+", help="Parquet files, directories or globs")
    p.add_argument("--batch-size", type=int, default=512, help="rows per batch")
    p.add_argument("--labels", nargs="*", default=[], help="label columns to carry")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_read)


def _run_read(args) -> dict:
    from deepsets.features.reader import ParquetBatchReader, describe_counts
    from deepsets.features.spec import FeatureSpec

    spec = FeatureSpec.load(args.spec)
    reader = ParquetBatchReader(spec, args.input, batch_size=args.batch_size, label_columns=args.labels, progress=True)
    batches = 0
    first = None
    for batch in reader:
        batch.validate()
        first = first or batch
        batches += 1
    counts = describe_counts(reader.counts)
    if not args.json:
        print(f"read {reader.rows_read} rows in {batches} batches of up to {args.batch_size}")
        print(format_stats(counts))
        if first is not None:
            print(describe_batch(first))
    return {"rows": reader.rows_read, "batches": batches, "counts": counts}
