"""The commands that run a trained model: ``embed``, ``retrieve`` and ``ablate``."""

from __future__ import annotations

from deepsets.pipelines.commands.options import JSON_HELP, _add_model_and_input


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
    from deepsets.pipelines.ablation.config import parse_ablate_config
    from deepsets.pipelines.ablation.job import run_ablate
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
