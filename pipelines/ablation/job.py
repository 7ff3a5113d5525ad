"""``deepsets ablate``: which modality earns its keep, overall and per row.

Recipe (:func:`run_ablate`, one function per step):
    load     -- the model and what it can answer (:func:`load_ablatable`);
    encode   -- read the rows through the model's spec, run the encoders once and keep the
                per-modality vectors (N, M, D) and presence (N, M) (:func:`encode_rows`);
    evaluate -- every method reruns only the fusion head with a changed presence mask (or, for
                permutation, shuffled vectors of one modality): leave-one-out, only-one,
                permutation, exact Shapley over all 2^M subsets, max-pool winners
                (:func:`evaluate`, methods in :mod:`pipelines.ablation.methods`); with
                ``--retrain`` also one new training run without each modality;
    report   -- bootstrap intervals (rows resampled, the same draws for every method), a table
                (Parquet, JSON, Markdown), a bar chart PNG, per-row Shapley values; everything
                logged to the model's MLflow run under ``ablation/`` (:func:`report`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from deepsets import ablation as ab
from deepsets.inference import iter_outputs
from features import storage
from features.errors import DataError
from features.reader import ParquetBatchReader
from pipelines.ablation.methods import METHODS, METRIC_NAMES, CachedRows, SubsetScorer
from pipelines.ablation.report import log_to_mlflow, write_outputs
from pipelines.models.source import ModelSource, load_model_source
from pipelines.options import parse_options

EXACT_SHAPLEY_UP_TO = 12
"""Above this many modalities Shapley values are sampled unless asked otherwise (2^12 subsets)."""
SAMPLED_PERMUTATIONS = 256
"""Random orders of the sampled estimator by default."""


class AblateConfig(BaseModel):
    """What ``deepsets ablate`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    inputs: List[str] = Field(min_length=1)
    out: str = "ablation"
    methods: List[str] = Field(default_factory=lambda: ["loo", "only", "permute", "shapley"])
    label: Optional[str] = None
    per_row: bool = False
    bootstrap: int = Field(200, ge=0, description="bootstrap samples for the intervals (0: none)")
    seed: int = 0
    batch_size: int = Field(1024, ge=1)
    log_mlflow: bool = True
    truth: Optional[str] = Field(None, description="a truth.json with planted contributions (the reference workload)")
    retrain: bool = Field(False, description="also retrain without each modality (Ray tasks, nested MLflow runs)")
    shapley_permutations: Optional[int] = Field(None, ge=2, description="estimate Shapley values from this many random modality orders "
                                                "(default: exact up to 12 modalities, 256 orders beyond)")

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: List[str]) -> List[str]:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        return list(dict.fromkeys(methods))


def parse_ablate_config(**values) -> AblateConfig:
    """:class:`AblateConfig` from keyword values.

    Raises:
        ConfigError: naming every bad option.
    """
    return parse_options(AblateConfig, "ablate", values)


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


def load_ablatable(cfg: AblateConfig) -> tuple[ModelSource, torch.nn.Module, str]:
    """The model source, its model (eval mode) and the label column to score against.

    Raises:
        ValueError: a ranking model, a model without per-modality vectors, a method or option
            the model cannot answer, or no label column.
    """
    source = load_model_source(cfg.model)
    task = source.model_args.task
    if task not in METRIC_NAMES:
        raise ValueError(f"{cfg.model} is a {task} ranking model: ablate measures pointwise task metrics "
                         "(binary, multilabel, multiclass, regression); ranking ablations are not built yet")
    model = source.build()
    if not hasattr(model, "encode"):
        raise ValueError(f"{cfg.model} is a {type(model).__name__}: ablation needs a set-fusion model (per-modality vectors)")
    head = model.fusion.head
    if "maxpool" in cfg.methods and getattr(head, "pooling", None) != "max":
        raise ValueError(f"method maxpool needs a DeepSet fusion head with max pooling; this model's head is {type(head).__name__}"
                         f"{' (' + head.pooling + ' pooling)' if hasattr(head, 'pooling') else ''}")
    if cfg.per_row and task not in ("binary", "regression"):
        raise ValueError(f"--per-row needs a single-score task (binary or regression); this model's task is {task}")
    if cfg.per_row and "shapley" not in cfg.methods:
        raise ValueError("--per-row needs the shapley method")
    if cfg.retrain and not source.run_config:
        raise ValueError(f"--retrain needs the model's training config; {cfg.model} has none (train it with `deepsets train`)")
    label = cfg.label or (source.label_columns[0] if source.label_columns else None)
    if not label:
        raise ValueError("no label column: pass --label COLUMN (the model does not say which column it was trained on)")
    return source, model, label


def encode_rows(source: ModelSource, model, cfg: AblateConfig, label: str, progress: bool) -> CachedRows:
    """Read every row through the model's spec and encode it once.

    Raises:
        DataError: for bad inputs (file, column, rows), or fewer than 2 rows.
    """
    reader = ParquetBatchReader(source.spec, cfg.inputs, batch_size=cfg.batch_size, label_columns=[label], progress=progress, desc="encoding")
    vectors, present, labels, ids = [], [], [], []
    for batch, out in iter_outputs(model, reader, ("vectors", "present")):
        vectors.append(out["vectors"])  # (b, M, D)
        present.append(out["present"])  # (b, M)
        labels.append(batch.labels[label])
        ids.append(batch.ids if batch.ids is not None else np.arange(reader.rows_read - batch.num_rows, reader.rows_read))
    rows = CachedRows(torch.cat(vectors), torch.cat(present), torch.cat(labels), np.concatenate(ids), list(model.names))
    if rows.num_rows < 2:
        raise DataError(f"ablation needs at least 2 rows, the input has {rows.num_rows}")
    return rows


def evaluate(cfg: AblateConfig, scorer: SubsetScorer, permutations: Optional[int], progress: bool) -> tuple[List[dict], dict]:
    """Every asked method's table rows, and what methods record besides (Shapley's efficiency
    check and estimator, per-row values); ``permutations``: sampled Shapley (None: exact)."""
    table: List[dict] = []
    extras: dict = {}
    for method in tqdm(cfg.methods, desc="methods", unit="method", disable=None if progress else True):
        table += METHODS[method](scorer, extras, seed=cfg.seed, per_row=cfg.per_row, permutations=permutations)
    return table, extras


def report(cfg: AblateConfig, source: ModelSource, summary: dict, per_row: Optional[dict], started: float) -> dict:
    """Write the table, chart and per-row values into ``cfg.out`` (a folder, or a URI: then
    written in a local temp folder and each file PUT under it), log them to MLflow, and return
    the finished summary."""
    with tempfile.TemporaryDirectory(prefix="deepsets-ablation-") as scratch:
        remote = storage.is_uri(cfg.out)
        out = Path(scratch) if remote else Path(cfg.out).absolute()
        written = write_outputs(out, summary, per_row)
        summary["files"] = {name: storage.join(cfg.out, Path(path).name) for name, path in written.items()} if remote else written
        summary["mlflow"] = log_to_mlflow(source, out) if cfg.log_mlflow else None
        summary["seconds"] = round(time.perf_counter() - started, 2)
        (out / "ablation.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
        if remote:  # each finished file PUT once
            for name, path in written.items():
                storage.write_bytes(summary["files"][name], Path(path).read_bytes())
    return summary


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
    source, model, label = load_ablatable(cfg)
    task, num = source.model_args.task, len(model.names)
    permutations = cfg.shapley_permutations or (SAMPLED_PERMUTATIONS if num > EXACT_SHAPLEY_UP_TO else None)
    if "shapley" in cfg.methods and permutations:
        say(f"Shapley values estimated from {permutations} random modality orders, with standard errors "
            f"(exact Shapley fuses all {2 ** num:,} subsets; it is the default up to {EXACT_SHAPLEY_UP_TO} modalities)")
    rows = encode_rows(source, model, cfg, label, progress)
    say(f"encoded {rows.num_rows} rows once: {num} modalities x {rows.vectors.shape[2]} dims; evaluating {', '.join(cfg.methods)}")
    boot = ab.bootstrap_indices(rows.num_rows, cfg.bootstrap, cfg.seed) if cfg.bootstrap else None
    scorer = SubsetScorer(model, rows, task, boot, every_subset="shapley" in cfg.methods and not permutations)
    table, extras = evaluate(cfg, scorer, permutations, progress)
    methods = list(cfg.methods)
    summary = {
        "rows": rows.num_rows, "modalities": rows.names, "task": task, "label": label, "metric": METRIC_NAMES[task],
        "full": scorer.full, "empty": scorer.empty, "methods": methods, "bootstrap": cfg.bootstrap,
        "table": table, "model_uri": source.uri, "model_version": source.version,
    }
    if cfg.retrain:
        from pipelines.ablation.retrain import retrain_table

        retrained, summary["retrain"] = retrain_table(source, cfg.inputs, label, rows.target, task, storage.join(storage.absolute(cfg.out), "retrain"),
                                                      boot, cfg.batch_size, progress)
        table.extend(retrained)
        methods.append("retrain")
    if cfg.truth:
        summary["spearman_vs_truth"] = compare_with_truth(cfg.truth, table, methods)
    if "shapley_efficiency" in extras:
        summary["shapley_efficiency"] = extras["shapley_efficiency"]
        summary["shapley_estimator"] = extras["shapley_estimator"]
    return report(cfg, source, summary, extras.get("per_row"), started)
