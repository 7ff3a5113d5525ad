"""``deepsets ablate``: which modality earns its keep, overall and per row.

Recipe (:func:`run_ablate`, one function per step):
    load     -- the model and what it can answer (:func:`load_ablatable`);
    encode   -- read the rows through the model's spec, run the encoders once and keep the
                per-modality vectors (N, M, D) and presence (N, M) (:func:`build_scorer`);
                a two-tower model's queries by its query tower and its item corpus
                (``--items``) by its item tower;
    evaluate -- every method reruns only the fusion head with a changed presence mask (or, for
                permutation, shuffled vectors of one modality): leave-one-out, only-one,
                permutation, exact Shapley over all 2^M subsets, max-pool winners
                (:func:`evaluate`, methods in :mod:`deepsets.pipelines.ablation.methods`); with
                ``--retrain`` also one new training run without each modality;
    metrics  -- pointwise tasks: one task metric (AUC, ...); ranking tasks: NDCG@k, MRR and
                Recall@k over query groups (listwise, pairwise) or of each query's held-out
                item among the corpus (two_tower), every method run once per metric
                (:mod:`deepsets.pipelines.ablation.ranking`);
    report   -- bootstrap intervals (rows, or for ranking tasks queries, resampled, the same
                draws for every method), a table
                (Parquet, JSON, Markdown), a bar chart PNG, per-row Shapley values; everything
                logged to the model's MLflow run under ``ablation/<time>-<hex>/`` (:func:`report`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from deepsets import ablation as ab
from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet, resolve_inputs
from deepsets.features.ids import check_row_id_kind
from deepsets.pipelines.ablation.config import AblateConfig
from deepsets.pipelines.ablation.inputs import encode_retrieval, encode_rows
from deepsets.pipelines.ablation.methods import METHODS, CachedRows, SubsetScorer
from deepsets.pipelines.ablation.outputs import check_out, report
from deepsets.pipelines.ablation.ranking import GroupedScorer, RetrievalScorer, exclusion_pairs, tower_rows
from deepsets.pipelines.ablation.report import RETRAIN
from deepsets.pipelines.models.source import ModelSource, load_model_source
from deepsets.pipelines.retrieval.exclusions import exclusion_columns, read_exclusions
from deepsets.pipelines.training.inputs import check_label_values
from deepsets.task_kinds import task_names, task_traits

EXACT_SHAPLEY_UP_TO = 12
"""Above this many modalities Shapley values are sampled unless asked otherwise (2^12 subsets)."""
SAMPLED_PERMUTATIONS = 256
"""Random orders of the sampled estimator by default."""
UNITS = {"listwise": "query groups", "pairwise": "query groups", "two_tower": "queries"}
"""What the bootstrap resamples for a ranking task (rows otherwise)."""


def compare_with_truth(path: str, table: List[dict], methods: List[str]) -> dict:
    """Spearman correlation of each method's per-modality values with the planted
    ``contribution`` of ``truth.json`` (written by ``deepsets synth``).

    Raises:
        DataError: when the file is missing or has no ``contribution``.
    """
    try:
        truth = json.loads(Path(path).read_text(encoding="utf-8"))["contribution"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"cannot read planted contributions: {err}", file=path) from None
    out = {}
    for method in methods:
        rows = [r for r in table if r["method"] == method and r["modality"] in truth]
        if len(rows) >= 2:
            out[method] = round(ab.spearman([r["delta"] for r in rows], [truth[r["modality"]] for r in rows]), 4)
    return out


@dataclass
class Ablatable:
    """What a model is measured on: its task and the columns to read."""

    task: str
    label: Optional[str] = None
    group: Optional[str] = None
    item_column: Optional[str] = None
    k: int = 10


def _column_of(value: Optional[str], source: ModelSource, key: str, option: str, task: str) -> str:
    value = value or (source.run_config or {}).get("data", {}).get(key)
    if not value:
        raise ValueError(
            f"a {task} model needs its {key.replace('_', ' ')}: pass {option} COLUMN (the model does not say)"
        )
    return value


def load_ablatable(cfg: AblateConfig) -> tuple[ModelSource, torch.nn.Module, Ablatable]:
    """The model source, its model (eval mode; a two-tower model whole) and what to read.

    Raises:
        ValueError: a model without per-modality vectors, a method or option the model cannot
            answer, or no label / group / item column.
    """
    source = load_model_source(cfg.model)
    task = source.model_args.task
    two_tower = task == "two_tower"
    model = source.build(both_towers=True)
    if not two_tower and not hasattr(model, "encode"):
        raise ValueError(
            f"{cfg.model} is a {type(model).__name__}: ablation needs a set-fusion model (per-modality vectors)"
        )
    if "maxpool" in cfg.methods:
        head = None if two_tower else model.fusion.head
        if getattr(head, "pooling", None) != "max":
            raise ValueError(
                "method maxpool needs a DeepSet fusion head with max pooling; this model's head is "
                + (
                    "two towers"
                    if two_tower
                    else type(head).__name__ + (f" ({head.pooling} pooling)" if hasattr(head, "pooling") else "")
                )
            )
    traits = task_traits(task)
    if cfg.per_row and not traits.per_row:  # one value per row to split: the score, or a two-tower query's own metric
        per_row = ", ".join(name for name in task_names() if task_traits(name).per_row)
        raise ValueError(f"--per-row needs a task with one score per row ({per_row}); this model's task is {task}")
    if cfg.per_row and "shapley" not in cfg.methods:
        raise ValueError("--per-row needs the shapley method")
    ranking = traits.ablation_metric is None  # scored by its ranking metrics per query
    if cfg.retrain and ranking:
        raise ValueError(f"--retrain is built for pointwise tasks; this model's task is {task}")
    if cfg.retrain and not source.run_config:
        raise ValueError(
            f"--retrain needs the model's training config; {cfg.model} has none (train it with `deepsets train`)"
        )
    misplaced = [
        option
        for option, given, fits in (
            ("--items", cfg.items, two_tower),
            ("--exclude", cfg.exclude, two_tower),
            ("--exclude-columns", cfg.exclude_columns, two_tower),
            ("--item-column", cfg.item_column, two_tower),
            ("--group", cfg.group, traits.grouped),
            ("--k", cfg.k, ranking),
            ("--label", cfg.label, not two_tower),
            ("--truth", cfg.truth, not two_tower),
        )
        if given and not fits
    ]
    if misplaced:
        raise ValueError(
            f"{', '.join(misplaced)}: not for a {task} model (--items, --exclude, --item-column: two_tower; "
            "--group: listwise, pairwise; --k: ranking models; --label, --truth: all but two_tower)"
        )
    k = cfg.k or int((source.run_config or {}).get("task", {}).get("k") or 10)
    if two_tower:
        return (
            source,
            model,
            Ablatable(task, item_column=_column_of(cfg.item_column, source, "item_column", "--item-column", task), k=k),
        )
    label = cfg.label or (source.label_columns[0] if source.label_columns else None)
    if not label:
        raise ValueError("no label column: pass --label COLUMN (the model does not say which column it was trained on)")
    group = _column_of(cfg.group, source, "group_column", "--group", task) if traits.grouped else None
    return source, model, Ablatable(task, label=label, group=group, k=k)


def build_scorer(
    cfg: AblateConfig, source: ModelSource, model, what: Ablatable, every_subset: bool, progress: bool
) -> SubsetScorer:
    """Encode the rows once and wrap them in the scorer of the model's task.

    Raises:
        DataError: bad inputs (file, column, rows), fewer than 2 rows, an item missing from
            the corpus.
        ValueError: a listwise / pairwise set without a relevant row.
    """
    if what.task == "two_tower":
        queries, corpus = encode_retrieval(
            model, source.spec, cfg.inputs, cfg.items, what.item_column, cfg.batch_size, progress
        )
        exclude, counts = read_excluded(cfg, source, queries, corpus, what.item_column) if cfg.exclude else (None, None)
        scorer = RetrievalScorer(
            model, queries, corpus, cfg.bootstrap, cfg.seed, every_subset, what.k, exclude, progress
        )
        scorer.exclusions = counts
        return scorer
    keys = [what.group] if what.group else []
    check_ablation_labels(
        cfg.inputs, what, (source.run_config or {}).get("task", {}).get("num_outputs"), source.spec.schema.id_column
    )
    rows, columns = encode_rows(model, source.spec, cfg.inputs, [what.label], keys, cfg.batch_size, progress)
    if what.group:
        if rows.target.dim() != 1:
            raise DataError(
                f"a {what.task} model ranks by one relevance value per row; the label column holds {rows.target.shape[1]} per row "
                "(pass --label COLUMN)",
                column=what.label,
            )
        return GroupedScorer(model, rows, what.task, cfg.bootstrap, cfg.seed, every_subset, columns[what.group], what.k)
    return SubsetScorer(model, rows, what.task, cfg.bootstrap, cfg.seed, every_subset)


def check_ablation_labels(inputs, what: Ablatable, width: Optional[int], id_column: Optional[str] = None) -> None:
    """The label column holds what the model's task scores (0/1 for binary and multilabel, class
    ids for multiclass), as training checks it: a 2 would count twice in an AUC; and the row ids
    (which key the per-row values) are of one kind in every file, as ``fit`` and ``embed`` require.

    Raises:
        DataError: naming the file, column and rows that hold something else.
    """
    id_kinds: dict = {}
    for path in resolve_inputs(inputs):
        parquet = open_parquet(path)
        check_row_id_kind(path, parquet.schema_arrow, id_column, id_kinds)
        if what.label in parquet.schema_arrow.names:  # a missing column is the reader's error, with the others
            check_label_values(what.task, width, [what.label], path, parquet)


def read_excluded(cfg: AblateConfig, source: ModelSource, queries: CachedRows, corpus: CachedRows, item_column: str):
    """``--exclude`` as (query row, corpus index) pairs.

    Raises:
        DataError: as ``read_exclusions``, or query rows without ids to match pairs on.
    """
    id_column = source.spec.schema.id_column
    if not id_column:
        raise DataError("--exclude matches pairs on the query rows' ids, and the model's schema has no id_column")
    query_column, pair_item_column = exclusion_columns(cfg.exclude_columns, id_column, item_column)
    excluded = read_exclusions(
        cfg.exclude, query_column, pair_item_column, pa.array(queries.ids).type, pa.array(corpus.ids)
    )
    pairs, counts = exclusion_pairs(excluded, queries.ids, queries.target)
    counts["unknown_items"] = excluded.unknown_items
    if excluded.pairs and not counts["applied"]:
        raise DataError(
            f"none of the {excluded.pairs} pairs of --exclude matches a query row and a corpus item (query ids in column "
            f"{query_column!r} are matched with the inputs' {id_column!r}, items in {pair_item_column!r} with the corpus' "
            f"{item_column!r}; e.g. input ids {queries.ids[:3].tolist()})",
            file=cfg.exclude,
        )
    return pairs, counts


def evaluate(
    cfg: AblateConfig, scorer: SubsetScorer, permutations: Optional[int], progress: bool
) -> tuple[List[dict], dict]:
    """Every asked method's table rows for each of the scorer's metrics (each row names its
    ``metric``), and what the methods record besides for the main metric (Shapley's efficiency
    check and estimator, per-row values); ``permutations``: sampled Shapley (None: exact)."""
    table: List[dict] = []
    extras: dict = {}
    steps = [(metric, method) for metric in scorer.metric_names for method in cfg.methods]
    for metric, method in tqdm(steps, desc="methods", unit="method", disable=None if progress else True):
        scorer.use_metric(metric)
        main = metric == scorer.metric_names[0]
        rows = METHODS[method](
            scorer, extras if main else {}, seed=cfg.seed, per_row=cfg.per_row and main, permutations=permutations
        )
        if isinstance(scorer, RetrievalScorer) and method == cfg.methods[-1]:
            rows += tower_rows(scorer, cfg.methods)
        table += [{**row, "metric": metric} for row in rows]
    scorer.use_metric(scorer.metric_names[0])
    return table, extras


def run_ablate(cfg: AblateConfig, progress: bool = True) -> dict:
    """Run the ablation; returns the summary ``--json`` prints.

    Raises:
        DataError: bad inputs, or fewer than 2 rows.
        JobError: a model that cannot be loaded.
        ValueError: a model without per-modality vectors, a method or option the model cannot
            answer (maxpool without a max-pool head), a missing label column.
    """
    started = time.perf_counter()
    say = print if progress else (lambda *a: None)
    earlier = check_out(cfg.out, cfg.overwrite)
    source, model, what = load_ablatable(cfg)
    task, num = what.task, len(model.names)
    permutations = cfg.shapley_permutations or (SAMPLED_PERMUTATIONS if num > EXACT_SHAPLEY_UP_TO else None)
    if "shapley" in cfg.methods and permutations:
        say(
            f"Shapley values estimated from {permutations} random modality orders, with standard errors "
            f"(exact Shapley fuses all {2**num:,} subsets; it is the default up to {EXACT_SHAPLEY_UP_TO} modalities)"
        )
    scorer = build_scorer(cfg, source, model, what, "shapley" in cfg.methods and not permutations, progress)
    rows = scorer.rows
    say(
        f"encoded {rows.num_rows} rows once: {num} modalities x {rows.vectors.shape[2]} dims; evaluating {', '.join(cfg.methods)}"
        + (
            f" with {', '.join(scorer.metric_names)} over {scorer.units} {UNITS.get(task, 'rows')}"
            if task_traits(task).ablation_metric is None
            else ""
        )
    )
    table, extras = evaluate(cfg, scorer, permutations, progress)
    methods = list(cfg.methods)
    by_metric = {}
    for metric in scorer.metric_names:
        scorer.use_metric(metric)
        by_metric[metric] = {"full": scorer.full, "empty": scorer.empty}
    scorer.use_metric(scorer.metric_names[0])
    summary = {
        "rows": rows.num_rows,
        "modalities": scorer.names,
        "task": task,
        "label": what.label,
        "metric": scorer.metric_name,
        "metrics": scorer.metric_names,
        "by_metric": by_metric,
        "units": {"kind": UNITS.get(task, "rows"), "count": scorer.units},
        "full": scorer.full,
        "empty": scorer.empty,
        "methods": methods,
        "bootstrap": cfg.bootstrap,
        "table": table,
        "model_uri": source.uri,
        "model_version": source.version,
    }
    if isinstance(scorer, RetrievalScorer):
        summary["towers"] = scorer.towers
        summary["corpus_items"] = scorer.corpus.num_rows
        summary["excluded_pairs"] = 0 if scorer.exclude is None else int(scorer.exclude[0].numel())
        summary["exclusions"] = scorer.exclusions
    if cfg.retrain:
        from deepsets.pipelines.ablation.retrain import retrain_table

        retrained, summary["retrain"] = retrain_table(
            source,
            cfg.inputs,
            what.label,
            rows.target,
            task,
            storage.join(storage.absolute(cfg.out), RETRAIN),
            scorer.boot,
            cfg.batch_size,
            progress,
        )
        table.extend({**row, "metric": scorer.metric_name} for row in retrained)
        methods.append("retrain")
    if cfg.truth:
        summary["spearman_vs_truth"] = compare_with_truth(
            cfg.truth, [r for r in table if r["metric"] == scorer.metric_name], methods
        )
    if "shapley_efficiency" in extras:
        summary["shapley_efficiency"] = extras["shapley_efficiency"]
        summary["shapley_estimator"] = extras["shapley_estimator"]
    return report(cfg, source, summary, extras.get("per_row"), started, earlier)
