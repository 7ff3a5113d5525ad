"""The commands that run a trained model: ``embed``, ``retrieve`` and ``ablate``.

Their flags are the fields of each job's config model (``add_config_flags``): an option is
declared there once, with its default and help, and reaches the job through ``config_values``.
"""

from __future__ import annotations

from deepsets.pipelines.ablation.config import AblateConfig, parse_ablate_config
from deepsets.pipelines.commands.config_flags import add_config_flags, config_values
from deepsets.pipelines.commands.options import JSON_HELP
from deepsets.pipelines.embedding.config import EmbedConfig, parse_embed_config
from deepsets.pipelines.retrieval.config import RetrieveConfig, parse_retrieve_config


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="embed Parquet rows with a trained model on Ray Data (exactly once, resumable)")
    add_config_flags(p, EmbedConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_embed)


def _run_embed(args) -> dict:
    from deepsets.pipelines.embedding.job import run_embed
    from deepsets.pipelines.report import format_embed_summary

    summary = run_embed(parse_embed_config(**config_values(args, EmbedConfig)), progress=not args.json)
    if not args.json:
        print(format_embed_summary(summary))
    return summary


def _add_retrieve(sub) -> None:
    p = sub.add_parser(
        "retrieve", help="top-k items per query from `embed --tower item` and `--tower query` outputs (FAISS)"
    )
    add_config_flags(p, RetrieveConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_retrieve)


def _run_retrieve(args) -> dict:
    from deepsets.pipelines.report import format_retrieve_summary
    from deepsets.pipelines.retrieval.job import run_retrieve

    summary = run_retrieve(parse_retrieve_config(**config_values(args, RetrieveConfig)), progress=not args.json)
    if not args.json:
        print(format_retrieve_summary(summary))
    return summary


def _add_ablate(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="per-modality contributions: leave-one-out, only-one, permutation, exact Shapley, max-pool wins "
        "(ranking models: NDCG@k, MRR, Recall@k)",
    )
    add_config_flags(p, AblateConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_ablate)


def _run_ablate(args) -> dict:
    from deepsets.pipelines.ablation.job import run_ablate
    from deepsets.pipelines.ablation.report import markdown_table

    summary = run_ablate(parse_ablate_config(**config_values(args, AblateConfig)), progress=not args.json)
    if not args.json:
        print(markdown_table(summary))
        print(f"written: {', '.join(summary['files'].values())}")
        if summary["mlflow"]:
            print(f"logged to MLflow run {summary['mlflow']['run_id']} under ablation/")
    return summary
