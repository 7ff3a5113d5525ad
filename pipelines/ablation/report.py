"""Writing an ablation: table (Parquet, JSON, Markdown), bar chart PNG, per-row Parquet, MLflow;
a local ``--out`` replaced as a whole folder (:func:`replacing_folder`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TITLES = {
    "loo": "leave-one-out: metric drop without it",
    "only": "only-one: metric gain from it alone",
    "permute": "permutation: metric drop when shuffled",
    "shapley": "Shapley value (metric)",
    "maxpool": "max-pool: share of dimensions won",
    "retrain": "retrained without it: metric drop",
}


def table_row(method: str, modality: str, value: float, delta: float, samples=None) -> dict:
    """One row of the ablation table; ``samples`` (bootstrap values of ``delta``, or None)
    give its 95% percentile interval (NaN without)."""
    from deepsets.ablation import percentile_interval

    low, high = float("nan"), float("nan")
    if samples is not None:
        lo, hi = percentile_interval(samples)
        low, high = float(lo), float(hi)
    return {
        "method": method,
        "modality": modality,
        "value": float(value),
        "delta": float(delta),
        "low": low,
        "high": high,
    }


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.4f}"


SIGN_MEANING = {
    "loo": "the metric falls by this much without it",
    "only": "the metric with it alone rises by this much over none present",
    "permute": "the metric falls by this much when its vectors are shuffled",
    "shapley": "its average contribution to the metric over all subsets",
    "maxpool": "the share of dimensions it wins",
    "retrain": "a model trained without it scores this much lower",
}
"""What a positive value of each method's column says (the table's legend)."""


def _rows_of(summary: dict, metric: str) -> list:
    return [r for r in summary["table"] if r.get("metric", summary["metric"]) == metric]


def _header(summary: dict) -> str:
    units = summary.get("units") or {"kind": "rows", "count": summary["rows"]}
    where = f"{summary['rows']} rows"
    if units["kind"] == "query groups":
        where += f" in {units['count']} query groups with a relevant row"
    elif "corpus_items" in summary:
        where += f" (queries), each one's held-out item ranked among {summary['corpus_items']} items"
        found = summary.get("exclusions")
        if found:
            skipped = [
                f"{found[key]} {what}"
                for key, what in (
                    ("unknown_items", "name an item not in the corpus"),
                    ("held_out_item_pairs", "name the query's held-out item (never left out)"),
                    ("unmatched_query_ids", "query ids match no input row"),
                )
                if found.get(key)
            ]
            where += (
                f" ({found['applied']} seen (query, item) pairs left out, for {found['queries_matched']} queries, of {found['pairs']} read"
                + (f"; not applied: {'; '.join(skipped)}" if skipped else "")
                + ")"
            )
    return (
        f"Ablation of {summary['model_uri']} on {where}; 95% bootstrap intervals over {summary['bootstrap']} resamples of "
        f"{units['kind']}."
    )


def _metric_table(summary: dict, metric: str) -> list:
    methods = summary["methods"]
    cells: Dict[tuple, dict] = {(r["method"], r["modality"]): r for r in _rows_of(summary, metric)}
    values = (summary.get("by_metric") or {}).get(metric, {"full": summary["full"], "empty": summary["empty"]})
    lines = [
        f"Metric {metric} (all present {values['full']:.4f}, none present {values['empty']:.4f}).",
        "",
        "| modality | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    order = sorted(summary["modalities"], key=lambda n: -cells.get((methods[0], n), {"delta": 0})["delta"])
    towers = sorted({name for _, name in cells} - set(summary["modalities"]))  # two_tower: the towers as two players
    for name in order + towers:
        row = []
        for method in methods:
            r = cells.get((method, name))
            interval = "" if r is None or math.isnan(r["low"]) else f" [{_fmt(r['low'])}, {_fmt(r['high'])}]"
            row.append("-" if r is None else f"{_fmt(r['delta'])}{interval}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def markdown_table(summary: dict) -> str:
    """One table per metric (the main one first): one row per modality, one column per
    method, delta [low, high]; a two-tower model's towers as two rows below."""
    methods = summary["methods"]
    lines = [
        _header(summary),
        f"Rows sorted by the {methods[0]} column, largest first. Positive means the modality helps: "
        + "; ".join(f"{m}: {SIGN_MEANING[m]}" for m in methods if m in SIGN_MEANING)
        + ".",
    ]
    if summary.get("towers") and {"loo", "shapley", "only"} & set(methods):
        lines.append(
            "Two towers: only-one keeps one modality in its tower and the other tower whole, measured from its tower empty; "
            "the rows 'query tower' and 'item tower' score each whole tower as one player (leave-one-out: the metric "
            "without it; Shapley: its share of all minus none)."
        )
    for metric in summary.get("metrics") or [summary["metric"]]:
        lines += [""] + _metric_table(summary, metric)
    if summary.get("spearman_vs_truth"):
        lines += [
            "",
            "Spearman vs planted contributions: "
            + ", ".join(f"{k} {v:+.2f}" for k, v in summary["spearman_vs_truth"].items()),
        ]
    eff = summary.get("shapley_efficiency")
    if eff:
        lines += [
            "",
            f"Shapley efficiency ({summary['metric']}): sum of values {eff['sum_of_values']:.6f} = all minus none "
            f"{eff['full_minus_empty']:.6f} (|error| {eff['abs_error']:.2e}, {eff['subsets']} subsets fused).",
        ]
    estimator = summary.get("shapley_estimator") or {}
    if estimator.get("kind") == "sampled":
        lines += [
            "",
            f"Shapley values estimated from {estimator['permutations']} random modality orders (antithetic pairs); "
            "standard error of each estimate: "
            + ", ".join(f"{n} {se:.4f}" for n, se in estimator["standard_error"].items())
            + ".",
        ]
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict, path: Path) -> None:
    """One panel per method: a horizontal bar per modality with its interval."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.2 * len(methods), 0.45 * len(summary["modalities"]) + 1.6), squeeze=False
    )
    for ax, method in zip(axes[0], methods):
        rows = sorted(
            (r for r in _rows_of(summary, summary["metric"]) if r["method"] == method), key=lambda r: r["delta"]
        )
        names = [r["modality"] for r in rows]
        deltas = np.array([r["delta"] for r in rows])
        lows, highs = np.array([r["low"] for r in rows]), np.array([r["high"] for r in rows])
        has = ~np.isnan(lows)
        errors = np.vstack([np.where(has, deltas - lows, 0), np.where(has, highs - deltas, 0)]).clip(min=0)
        ax.barh(names, deltas, xerr=errors if has.any() else None, color="#4c72b0", capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(TITLES[method], fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(
        f"per-modality contribution, {summary['metric']} (all {summary['full']:.3f}, none {summary['empty']:.3f}), "
        f"{summary['rows']} rows",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FILE_NAMES = {
    "table_parquet": "ablation.parquet",
    "table_markdown": "ablation.md",
    "chart": "ablation.png",
    "table_json": "ablation.json",
    "per_row": "per_row_shapley.parquet",
}
"""What ``deepsets ablate`` writes into ``--out``, by its key in the summary's ``files``."""
OUTPUT_NAMES = tuple(FILE_NAMES.values())
"""A folder holding any of these holds an earlier ablation."""


def write_outputs(out: Path, summary: dict, per_row: Optional[dict]) -> Dict[str, str]:
    """Write the table, chart and per-row values into ``out``; returns name -> path.

    ``per_row_shapley.parquet`` keys its rows by ``per_row["id_column"]`` (the input's id
    column, or ``row``: the row's position in the input)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {key: out / FILE_NAMES[key] for key in ("table_parquet", "table_markdown", "chart", "table_json")}
    pq.write_table(pa.Table.from_pylist(summary["table"]), files["table_parquet"])
    files["table_markdown"].write_text(markdown_table(summary), encoding="utf-8")
    bar_chart(summary, files["chart"])
    if per_row is not None:
        values = {"score_all": per_row["full"], "score_none": per_row["empty"]}
        for m, name in enumerate(per_row["names"]):
            values[f"shapley_{name}"] = per_row["phi"][:, m]
        id_name = per_row.get("id_column", "row")
        id_name = id_name if id_name not in values else f"{id_name}_id"  # an id column named like a value column
        columns = {id_name: pa.array(per_row["ids"]), **values}
        files["per_row"] = out / FILE_NAMES["per_row"]
        pq.write_table(pa.table(columns), files["per_row"])
    files["table_json"].write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    return {k: str(v) for k, v in files.items()}


LATEST_TAG = "deepsets.ablation"
"""The model run's tag naming the artifact folder of its latest ablation."""


def log_to_mlflow(source, out: Path) -> Optional[dict]:
    """Log the files of ``out`` to the model's MLflow run (when it has one) under a folder of
    their own, ``ablation/<YYYYmmdd-HHMMSS>-<random hex>``, and tag the run with it
    (:data:`LATEST_TAG`): an ablation never mixes its files with an earlier one's, whose folder
    stays as it was (MLflow has no call to delete or rename a run's artifacts)."""
    if not source.run_id:
        return None
    from mlflow.tracking import MlflowClient

    folder = f"ablation/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    client = MlflowClient()
    client.log_artifacts(source.run_id, str(out), artifact_path=folder)
    client.set_tag(source.run_id, LATEST_TAG, folder)
    return {"run_id": source.run_id, "artifact_path": folder}


RETRAIN = "retrain"
"""The folder inside ``--out`` where ``--retrain`` trains (specs, checkpoints): kept when the
ablation's files are replaced."""


@contextlib.contextmanager
def replacing_folder(target: Path) -> Iterator[Path]:
    """A fresh hidden folder beside the local folder ``target`` to write a new output into;
    when the block ends, it takes ``target``'s place as a whole (:func:`swap_in`), so ``target``
    never holds a mix of two runs' files. An error in the block deletes the fresh folder and
    leaves ``target`` as it was.

    Raises:
        OSError: when the folder beside ``target`` cannot be made or the swap fails.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        yield fresh
        swap_in(fresh, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def swap_in(fresh: Path, target: Path) -> None:
    """Replace ``target`` by ``fresh`` (two folders side by side): ``fresh``'s files synced,
    ``target``'s ``retrain/`` moved into ``fresh``, ``target`` renamed away, ``fresh`` renamed
    in, the old folder deleted. A rename that fails puts everything back. Only a crash in the
    instant between the two renames leaves no ``target``: then the earlier output is the
    ``.<name>.old-*`` folder beside it and the new one ``.<name>.new-*``.

    Raises:
        OSError: when a rename fails (``target`` is left as it was).
    """
    for path in fresh.iterdir():
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
    if not target.exists():
        os.rename(fresh, target)
        _sync_folder(target.parent)
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    carried = (target / RETRAIN).is_dir() and not (fresh / RETRAIN).exists()
    if carried:
        os.rename(target / RETRAIN, fresh / RETRAIN)
    try:
        os.rename(target, old)
        try:
            os.rename(fresh, target)
        except BaseException:
            os.rename(old, target)
            raise
    except BaseException:
        if carried:
            os.rename(fresh / RETRAIN, target / RETRAIN)
        raise
    _sync_folder(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Make the renames inside a local folder durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
