"""``deepsets ablate``: which modality earns its keep, overall and per row.

Recipe:
    encode   -- read the rows through the model's spec, run the encoders once and keep the
                per-modality vectors (N, M, D) and presence (N, M) (``deepsets.ablation``);
    evaluate -- every method reruns only the fusion head with a changed presence mask (or, for
                permutation, shuffled vectors of one modality): leave-one-out, only-one,
                permutation, exact Shapley over all 2^M subsets, max-pool winners;
    report   -- bootstrap intervals (rows resampled, the same draws for every method), a table
                (Parquet, JSON, Markdown), a bar chart PNG, per-row Shapley values; everything
                logged to the model's MLflow run under ``ablation/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from deepsets import ablation as ab
from features.errors import FeatureError
from features.reader import ParquetBatchReader
from pipelines.ablate_report import log_to_mlflow, table_row, write_outputs
from pipelines.config import parse_options
from pipelines.model_source import ModelSource, load_model_source

METHODS = ("loo", "only", "permute", "shapley", "maxpool")


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
        ValueError: naming every bad field, on one line.
    """
    return parse_options(AblateConfig, "ablate", values)


def _read(source: ModelSource, model, cfg: AblateConfig, label: str, progress: bool):
    reader = ParquetBatchReader(source.spec, cfg.inputs, batch_size=cfg.batch_size, label_columns=[label], progress=progress, desc="encoding")
    vectors, present, labels, ids = [], [], [], []
    with torch.inference_mode():
        for batch in reader:
            v, p = model.encode(batch)  # (b, M, D), (b, M)
            vectors.append(v.float())
            present.append(p)
            labels.append(batch.labels[label])
            ids.append(batch.ids if batch.ids is not None else np.arange(reader.rows_read - batch.num_rows, reader.rows_read))
    return torch.cat(vectors), torch.cat(present), torch.cat(labels), np.concatenate(ids)


def compare_with_truth(path: str, table: List[dict], methods: List[str]) -> dict:
    """Spearman correlation of each method's per-modality values with the planted
    ``contribution`` of ``truth.json`` (written by ``deepsets synth``).

    Raises:
        FeatureError: when the file is missing or has no ``contribution``.
    """
    try:
        truth = json.loads(Path(path).read_text(encoding="utf-8"))["contribution"]
    except (OSError, ValueError, KeyError) as err:
        raise FeatureError(f"cannot read planted contributions: {err}", file=path) from None
    out = {}
    for method in methods:
        rows = [r for r in table if r["method"] == method and r["modality"] in truth]
        if len(rows) >= 2:
            out[method] = round(ab.spearman([r["delta"] for r in rows], [truth[r["modality"]] for r in rows]), 4)
    return out


def run_ablate(cfg: AblateConfig, progress: bool = True) -> dict:
    """Run the ablation; returns the summary ``--json`` prints.

    Raises:
        FeatureError / ValueError: bad inputs, a model without per-modality vectors, a method
            the model cannot answer (maxpool without a max-pool head), a missing label column.
    """
    started = time.perf_counter()
    say = print if progress else (lambda *a: None)
    source = load_model_source(cfg.model)
    task = source.model_config.get("task", "binary")
    if task in ("listwise", "pairwise", "two_tower"):
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
    if cfg.retrain and not source.run_config:
        raise ValueError(f"--retrain needs the model's training config; {cfg.model} has none (train it with `deepsets train`)")
    label = cfg.label or (source.label_columns[0] if source.label_columns else None)
    if not label:
        raise ValueError("no label column: pass --label COLUMN (the model does not say which column it was trained on)")
    names = list(model.names)
    num = len(names)
    if "shapley" in cfg.methods and num > 12:
        say(f"warning: exact Shapley over {num} modalities evaluates {2 ** num} subsets")
    vectors, present, target, ids = _read(source, model, cfg, label, progress)
    rows = vectors.shape[0]
    if rows < 2:
        raise FeatureError(f"ablation needs at least 2 rows, the input has {rows}")
    say(f"encoded {rows} rows once: {num} modalities x {vectors.shape[2]} dims; evaluating {', '.join(cfg.methods)}")

    def metric(logits):  # (..., N, K) -> (...)
        return ab.task_metric(task, logits, target)

    def metric_at(logits, idx):  # the metric on resampled rows idx (N,)
        return ab.task_metric(task, logits[..., idx, :], target[idx])

    boot = ab.bootstrap_indices(rows, cfg.bootstrap, cfg.seed) if cfg.bootstrap else None
    every_subset = None  # with Shapley, every subset is fused once and the other methods read from it
    if "shapley" in cfg.methods:
        every_subset = ab.subset_scores(model, vectors, present, ab.subset_masks(num))  # (2^M, N, K)

    def scores_of(masks):  # (S, M) -> (S, N, K)
        if every_subset is not None:
            return every_subset[ab.subset_index(masks)]
        return ab.subset_scores(model, vectors, present, masks)

    all_mask = torch.ones(1, num, dtype=torch.bool)
    full_scores = scores_of(all_mask)  # (1, N, K)
    full_value = float(metric(full_scores)[0])
    table: List[dict] = []
    extra: dict = {"metric": {"binary": "roc_auc", "multilabel": "macro_roc_auc", "multiclass": "accuracy", "regression": "neg_rmse"}[task]}

    def boot_metric(scores):  # (S, N, K) -> (B, S)
        return torch.stack([metric_at(scores, idx) for idx in boot]) if boot is not None else None

    full_boot = boot_metric(full_scores)  # (B, 1)
    bar = tqdm(total=len(cfg.methods), desc="methods", unit="method", disable=None if progress else True)
    empty_mask = torch.zeros(1, num, dtype=torch.bool)
    empty_scores = scores_of(empty_mask)  # (1, N, K)
    empty_value = float(metric(empty_scores)[0])
    for method in cfg.methods:
        if method == "loo":
            scores = scores_of(~torch.eye(num, dtype=torch.bool))  # (M, N, K): all but m
            values, samples = metric(scores), boot_metric(scores)
            for m, name in enumerate(names):
                table.append(table_row("loo", name, values[m], full_value - values[m], None if samples is None else full_boot[:, 0] - samples[:, m]))
        elif method == "only":
            scores = scores_of(torch.eye(num, dtype=torch.bool))  # (M, N, K): just m
            values, samples = metric(scores), boot_metric(scores)
            empty_boot = boot_metric(empty_scores)
            for m, name in enumerate(names):
                table.append(table_row("only", name, values[m], values[m] - empty_value, None if samples is None else samples[:, m] - empty_boot[:, 0]))
        elif method == "permute":
            generator = torch.Generator().manual_seed(cfg.seed)
            for m, name in enumerate(names):
                shuffled = ab.permuted_vectors(vectors, present, m, generator)
                scores = ab.subset_scores(model, shuffled, present, all_mask)  # (1, N, K)
                value, samples = float(metric(scores)[0]), boot_metric(scores)
                table.append(table_row("permute", name, value, full_value - value, None if samples is None else full_boot[:, 0] - samples[:, 0]))
        elif method == "shapley":
            masks = ab.subset_masks(num)  # (S, M)
            weights = ab.shapley_matrix(num)  # (M, S)
            scores = every_subset  # (S, N, K)
            values = metric(scores).double()  # (S,)
            phi = weights @ values  # (M,)
            samples = boot_metric(scores)  # (B, S)
            phi_boot = None if samples is None else samples.double() @ weights.T  # (B, M)
            for m, name in enumerate(names):
                table.append(table_row("shapley", name, phi[m], phi[m], None if phi_boot is None else phi_boot[:, m]))
            extra["shapley_efficiency"] = {"sum_of_values": float(phi.sum()), "full_minus_empty": float(values[-1] - values[0]),
                                           "abs_error": float(abs(phi.sum() - (values[-1] - values[0]))), "subsets": int(masks.shape[0])}
            if cfg.per_row:
                row_phi = weights @ scores[:, :, 0].double()  # (M, N): per-row contribution to the score
                extra["per_row"] = {"ids": ids, "phi": row_phi.T.numpy(), "full": scores[-1, :, 0].double().numpy(),
                                    "empty": scores[0, :, 0].double().numpy(), "names": names}
        elif method == "maxpool":
            with torch.inference_mode():
                winners = model.fuse(vectors, present).winners  # (N, D)
            shares = ab.max_pool_wins(winners, num)
            for m, name in enumerate(names):
                table.append(table_row("maxpool", name, shares[m], shares[m], None))
        bar.update(1)
    bar.close()
    if cfg.per_row and "per_row" not in extra:
        raise ValueError("--per-row needs the shapley method")
    methods = list(cfg.methods)
    if cfg.retrain:
        from pipelines.ablate_retrain import retrain_table

        retrained, extra["retrain"] = retrain_table(source, cfg.inputs, label, target, task, Path(cfg.out).absolute() / "retrain",
                                                    boot, cfg.batch_size, progress)
        table.extend(retrained)
        methods.append("retrain")
    summary = {
        "rows": rows, "modalities": names, "task": task, "label": label, "metric": extra["metric"],
        "full": full_value, "empty": empty_value, "methods": methods, "bootstrap": cfg.bootstrap,
        "table": table, "model_uri": source.uri, "model_version": source.version,
    }
    if "retrain" in extra:
        summary["retrain"] = extra["retrain"]
    if cfg.truth:
        summary["spearman_vs_truth"] = compare_with_truth(cfg.truth, table, methods)
    if "shapley_efficiency" in extra:
        summary["shapley_efficiency"] = extra["shapley_efficiency"]
    out = Path(cfg.out).absolute()
    summary["files"] = write_outputs(out, summary, extra.get("per_row"))
    summary["mlflow"] = log_to_mlflow(source, out) if cfg.log_mlflow else None
    summary["seconds"] = round(time.perf_counter() - started, 2)
    (out / "ablation.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    return summary
