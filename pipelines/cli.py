"""The ``deepsets`` command line: ``synth``, ``init``, ``fit``, ``read``, ``train``, ``tune``, ``embed``, ``retrieve``, ``ablate``, ``demo``.

Bad input ends with one ``error:`` line on stderr and exit status 2, never a traceback.
With ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Callable, List, Optional

from deepsets.pipelines.error_log import report_internal_error
from deepsets.pipelines.errors import USER_ERRORS
from deepsets.pipelines.redaction import redact_secrets, redact_uris
from deepsets.pipelines.report import describe_batch, format_stats, format_train_summary

JSON_HELP = "print a JSON summary as the last line"


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
    p.add_argument("--input", required=True, nargs="+", help="training Parquet files, directories or globs")
    p.add_argument("--label", required=True, help="the label column")
    p.add_argument("--valid", nargs="+", default=None, help="validation Parquet files, directories or globs")
    p.add_argument(
        "--id", dest="id_column", default=None, help="the row id column (default: a unique int or string column)"
    )
    p.add_argument("--out", default=".", help="folder for schema.toml and run.toml (default: the current one)")
    p.add_argument("--overwrite", action="store_true", help="replace schema.toml and run.toml already in --out")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_init)


def _run_init(args) -> dict:
    from deepsets.pipelines.init.job import run_init
    from deepsets.pipelines.init.writing import format_choices

    summary = run_init(
        args.input,
        args.label,
        valid=args.valid,
        id_column=args.id_column,
        out=args.out,
        overwrite=args.overwrite,
        progress=not args.json,
    )
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
    p.add_argument("--schema", required=True, help="schema TOML file")
    p.add_argument("--input", required=True, nargs="+", help="Parquet files, directories or globs")
    p.add_argument("--out", required=True, help="where to write the spec JSON")
    p.add_argument("--overwrite", action="store_true", help="replace a spec already at --out")
    p.add_argument("--no-validate", action="store_true", help="skip the pass that checks every value")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_fit)


def _run_fit(args) -> dict:
    from deepsets.features import storage
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec
    from deepsets.pipelines.errors import JobError

    if storage.exists(args.out) and not args.overwrite:
        raise JobError(f"--out {args.out} already exists: pass --overwrite to replace it, or choose another --out")
    schema = load_schema(args.schema)
    spec = FeatureSpec.fit(schema, args.input, validate=not args.no_validate, progress=True)
    spec.save(args.out)
    stats = spec.stats()
    if not args.json:
        print(format_stats(stats))
        print(f"spec written to {args.out}")
    return {"spec": args.out, "stats": stats}


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


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on Ray Train, tracked in MLflow")
    p.add_argument("--config", required=True, help="run config TOML (see docs/training.md)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set training.lr=0.01 (repeatable)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run named tracking.run_name from its last checkpoint"
    )
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_train)


def _run_train(args) -> dict:
    from deepsets.pipelines.config import load_run_config
    from deepsets.pipelines.training.run import run_training

    cfg = with_env_tracking_uri(load_run_config(args.config, args.overrides))
    summary = run_training(cfg, resume=args.resume, ray_address=args.ray_address, progress=not args.json)
    if not args.json:
        print(format_train_summary(summary))
    return summary


def with_env_tracking_uri(cfg):
    """An empty ``tracking.mlflow_uri`` filled from ``MLFLOW_TRACKING_URI`` as the user's shell set
    it (a tracking server a cluster shares). Only here, at the start of a command: in a longer
    process MLflow itself sets that variable on every ``set_tracking_uri``."""
    found = os.environ.get("MLFLOW_TRACKING_URI", "")
    if cfg.tracking.mlflow_uri or not found:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow_uri": found})})


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune", help="search a run config's settings on Ray Tune (ASHA stops poor trials early); writes best.toml"
    )
    p.add_argument("--config", required=True, help="run config TOML (see docs/training.md); needs data.valid")
    p.add_argument(
        "--space",
        default=None,
        help="search space TOML (see docs/choosing-settings.md; default: learning rate, "
        "model dim, dropout and modality dropout, printed at start)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="configurations to try (default: the space's trials, else 8; with --budget: as many as it allows)",
    )
    p.add_argument(
        "--budget",
        default=None,
        metavar="TIME",
        help="wall-clock time for the whole search: 90s, 20m, 1h, 1h30m or "
        "seconds; trials still running then are stopped and the best that ended is reported",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field for every trial (repeatable)",
    )
    p.add_argument("--out", default=None, help="output directory (default: tune-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier search's results in --out")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_tune)


def _run_tune(args) -> dict:
    from deepsets.pipelines.tuning.budget import parse_budget
    from deepsets.pipelines.tuning.job import run_tune

    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    budget_s = parse_budget(args.budget) if args.budget is not None else None
    # an empty tracking.mlflow_uri: the server the user's shell names, as `deepsets train` does
    return run_tune(
        args.config,
        args.space,
        overrides=args.overrides,
        trials=args.trials,
        budget_s=budget_s,
        out=args.out,
        overwrite=args.overwrite,
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        ray_address=args.ray_address,
        progress=not args.json,
    )


def _add_model_and_input(p, input_help: str) -> None:
    """The two arguments every job that runs a trained model takes."""
    p.add_argument("--model", required=True, help="MLflow model URI (runs:/..., models:/...) or a checkpoint directory")
    p.add_argument("--input", required=True, nargs="+", help=input_help)


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="embed Parquet rows with a trained model on Ray Data (exactly once, resumable)")
    _add_model_and_input(p, "Parquet files, directories or globs")
    p.add_argument("--output", required=True, help="output directory (embeddings/, rejects/, _manifest.json)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per forward pass (default 1024)")
    p.add_argument("--workers", type=int, default=1, help="actors, each with its own copy of the model (default 1)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (and torch threads) per worker (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker; > 0 runs the model on CUDA")
    p.add_argument(
        "--with-modalities", action="store_true", help="also write vector_<modality> and present_<modality> columns"
    )
    p.add_argument(
        "--tower",
        choices=("query", "item"),
        default=None,
        help="two-tower models: embed the query or the item side (reads only its modalities)",
    )
    p.add_argument(
        "--fragment-rows",
        type=int,
        default=50_000,
        help="rows per fragment, the unit of work and of output files (default 50000)",
    )
    p.add_argument("--resume", action="store_true", help="complete an interrupted job in --output (exactly once)")
    p.add_argument("--overwrite", action="store_true", help="replace a job already in --output")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_embed)


def _run_embed(args) -> dict:
    from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
    from deepsets.pipelines.report import format_embed_summary

    cfg = parse_embed_config(
        model=args.model,
        inputs=args.input,
        output=args.output,
        batch_size=args.batch_size,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        with_modalities=args.with_modalities,
        fragment_rows=args.fragment_rows,
        resume=args.resume,
        overwrite=args.overwrite,
        ray_address=args.ray_address,
        tower=args.tower,
    )
    summary = run_embed(cfg, progress=not args.json)
    if not args.json:
        print(format_embed_summary(summary))
    return summary


def _add_retrieve(sub) -> None:
    p = sub.add_parser(
        "retrieve", help="top-k items per query from `embed --tower item` and `--tower query` outputs (FAISS)"
    )
    p.add_argument("--items", required=True, help="the --output folder of `deepsets embed --tower item`")
    p.add_argument("--queries", required=True, help="the --output folder of `deepsets embed --tower query`")
    p.add_argument("--k", type=int, default=100, help="items per query (default 100)")
    p.add_argument("--out", required=True, help="output folder: part-*.parquet of (query id, rank, item id, score)")
    p.add_argument(
        "--exclude", default=None, help="Parquet of (query id, item id) pairs never to return, e.g. each user's history"
    )
    p.add_argument(
        "--exclude-columns",
        default="",
        help="QUERY_COLUMN,ITEM_COLUMN of --exclude (default: the embeddings' id column names)",
    )
    p.add_argument(
        "--index",
        choices=("flat", "ivf", "hnsw"),
        default="flat",
        help="flat: exact (default); ivf, hnsw: approximate, recall reported",
    )
    p.add_argument(
        "--nprobe", type=int, default=None, help="ivf: lists searched per query (default: tuned to --target-recall)"
    )
    p.add_argument(
        "--target-recall",
        type=float,
        default=0.95,
        help="ivf, hnsw: widen the search until recall@k against exact search "
        "on 1,000 queries reaches this (default 0.95)",
    )
    p.add_argument("--batch-size", type=int, default=4096, help="queries per search (default 4096)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier retrieve job's output in --out")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_retrieve)


def _run_retrieve(args) -> dict:
    from deepsets.pipelines.report import format_retrieve_summary
    from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

    cfg = parse_retrieve_config(
        items=args.items,
        queries=args.queries,
        k=args.k,
        out=args.out,
        exclude=args.exclude,
        exclude_columns=args.exclude_columns,
        index=args.index,
        nprobe=args.nprobe,
        target_recall=args.target_recall,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    summary = run_retrieve(cfg, progress=not args.json)
    if not args.json:
        print(format_retrieve_summary(summary))
    return summary


def _add_ablate(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="per-modality contributions: leave-one-out, only-one, permutation, exact Shapley, max-pool wins "
        "(ranking models: NDCG@k, MRR, Recall@k)",
    )
    _add_model_and_input(p, "labelled Parquet files, directories or globs (e.g. the validation split)")
    p.add_argument(
        "--methods",
        default="loo,only,permute,shapley",
        help="comma-separated: loo, only, permute, shapley, maxpool (default: the first four)",
    )
    p.add_argument(
        "--label", default=None, help="label column (default: the one the model was trained on, when the model says)"
    )
    p.add_argument(
        "--per-row",
        action="store_true",
        help="also write per-row Shapley contributions to the score (binary, regression, listwise, pairwise; two_tower: to each query's NDCG@k)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples for the 95%% intervals (default 200; 0: none)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the bootstrap resamples, permutations and sampled Shapley orders"
    )
    p.add_argument("--batch-size", type=int, default=1024, help="rows per forward pass")
    p.add_argument("--out", default="ablation", help="output directory (default: ablation)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier ablation's files in --out")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the results to the model's MLflow run")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="also train a new model without each modality (parallel Ray tasks, MLflow runs nested under one parent)",
    )
    p.add_argument(
        "--truth",
        default=None,
        help="truth.json of the reference workload: report Spearman vs the planted contributions",
    )
    p.add_argument(
        "--shapley-permutations",
        type=int,
        default=None,
        metavar="P",
        help="estimate Shapley values from P random modality orders, with standard errors (default: exact up to 12 modalities, 256 orders beyond)",
    )
    ranking = p.add_argument_group("ranking models (listwise, pairwise, two_tower)")
    ranking.add_argument(
        "--k", type=int, default=None, help="cutoff of NDCG@k and Recall@k (default: the model's task.k, else 10)"
    )
    ranking.add_argument("--group", default=None, help="listwise / pairwise: query group column (default: the model's)")
    ranking.add_argument(
        "--items",
        action="append",
        default=None,
        metavar="PATH",
        help="two_tower: the item corpus each query's held-out item is ranked in (repeatable; default: the inputs' distinct items)",
    )
    ranking.add_argument("--item-column", default=None, help="two_tower: item id column (default: the model's)")
    ranking.add_argument(
        "--exclude",
        default=None,
        metavar="PATH",
        help="two_tower: Parquet of (query id, item id) pairs left out of each query's ranking (seen items)",
    )
    ranking.add_argument(
        "--exclude-columns",
        default="",
        metavar="Q,I",
        help="the two columns of --exclude (default: the inputs' id column and the item column)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_ablate)


def _run_ablate(args) -> dict:
    from deepsets.pipelines.ablation.job import parse_ablate_config, run_ablate
    from deepsets.pipelines.ablation.report import markdown_table

    cfg = parse_ablate_config(
        model=args.model,
        inputs=args.input,
        out=args.out,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        label=args.label,
        per_row=args.per_row,
        bootstrap=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
        log_mlflow=not args.no_mlflow,
        truth=args.truth,
        retrain=args.retrain,
        shapley_permutations=args.shapley_permutations,
        k=args.k,
        group=args.group,
        items=args.items,
        item_column=args.item_column,
        exclude=args.exclude,
        exclude_columns=args.exclude_columns,
        overwrite=args.overwrite,
    )
    summary = run_ablate(cfg, progress=not args.json)
    if not args.json:
        print(markdown_table(summary))
        print(f"written: {', '.join(summary['files'].values())}")
        if summary["mlflow"]:
            print(f"logged to MLflow run {summary['mlflow']['run_id']} under ablation/")
    return summary


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job on embedded defaults: synth -> fit -> read back -> train on 2 Ray workers, tracked in ./mlflow.db",
    )
    p.add_argument("--out", default="demo_output", help="working directory for the demo (default: demo_output)")
    p.add_argument(
        "--rows", type=int, default=60_000, help="rows of synthetic data, 5/6 train and 1/6 validation (default 60000)"
    )
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated rows")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> dict:
    from deepsets.pipelines.demo import run_demo

    return run_demo(out_dir=args.out, rows=args.rows, seed=args.seed, workers=args.workers, quiet=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsets",
        description="Set fusion of heterogeneous, partly missing features: Parquet in, Ray for training, MLflow for tracking.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_synth,
        _add_init,
        _add_fit,
        _add_read,
        _add_train,
        _add_tune,
        _add_embed,
        _add_retrieve,
        _add_ablate,
        _add_demo,
    ):
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``deepsets`` console script; returns the exit status."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], dict] = args.run
    ray_was_running = _ray_running()  # a caller's own Ray (a notebook, a test session) is left running
    try:
        summary = run(args)
    except (*USER_ERRORS, ValueError, OSError) as err:
        # ValueError: an option the model cannot serve; OSError: an unwritable --out and the
        # like. One line even when the message has several.
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug or an unforeseen failure: one line here, the traceback in a file
        report_internal_error(args.command, err, one_line(err))
        return 1
    if getattr(args, "json", False):
        if not ray_was_running:
            _stop_ray()  # Ray forwards worker output asynchronously: stop it, so the JSON line is last
        print(json.dumps(redact_secrets(json_safe(summary)), default=str, allow_nan=False))  # no URI's password
    return 0


def one_line(err: BaseException) -> str:
    """The error's message on one line (several lines joined by '; '), every URI's password
    redacted (MLflow's messages name the tracking URI as given)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return redact_uris("; ".join(lines)) or type(err).__name__


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _stop_ray() -> None:
    if _ray_running():
        sys.modules["ray"].shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
