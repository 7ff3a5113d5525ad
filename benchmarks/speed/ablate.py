"""Cost of leave-one-out + exact Shapley with cached modality vectors, on M = 7 modalities.

    python -m benchmarks.speed.ablate --quick

The same rows (recsys-6 reference workload, pre-collated batches of 1024), two models built
like the demo's (D=64, 1 layer per sequence modality), one with transformer fusion and one with
DeepSet mean fusion:

Times are the best of 3 runs for (a) and (b).

(a) one plain evaluation pass: ``model(batch)`` over every row, plus its AUC;
(b) ours: encode every row once, then fuse every one of the 2^7 = 128 subsets rerunning only
    the fusion head, with the AUC of each: exact Shapley, and leave-one-out read from the same
    subsets (all-present and all-but-one are among them). Each row is fused once per distinct
    subset of the modalities it has, batched by subset size, the head seeing only the kept
    vectors (``deepsets.ablation.subset_scores``);
(b') the same with every row fused under every subset over all M slots
    (``subset_scores_dense``, the method before), best of 1;
(b'') ours without the per-row first layer: each fusion call gathers its tokens and runs the
    head's ``forward_compact`` from scratch (the compact method before ``compact_fuser``), best of 1;
(s) sampled Shapley from 64 random orders (antithetic pairs) on the same cached vectors, and
    how far it lands from the exact values in units of its own standard error;
(c) naive: the whole model (encoders too) rerun per subset; timed on 16 subsets and scaled to
    the 135 evaluations (128 subsets + all present + 7 leave-one-out) it would need.

The last line printed is one JSON object (the transformer-fusion model's figures first).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.speed.timing import best_seconds
from deepsets import ablation as ab
from deepsets.builders import build_model
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.inference import collect_outputs

NAIVE_SAMPLE = 16
SAMPLED_ORDERS = 64


def measure(model, batches, labels, repeats: int = 3) -> dict:
    """Best of ``repeats`` for (a) and (b); (c) once on NAIVE_SAMPLE subsets, scaled."""
    m = len(model.names)
    masks = ab.subset_masks(m)
    loo = ~torch.eye(m, dtype=torch.bool)
    checks = {}

    def one_pass() -> None:
        logits = torch.cat([model(b).logits for b in batches])  # (N, 1)
        ab.auc(logits[:, 0], labels)

    def ours() -> None:
        cached = collect_outputs(model, batches, ("vectors", "present"))
        vectors, present = cached["vectors"], cached["present"]  # (N, M, D), (N, M)
        all_scores = ab.subset_scores(model, vectors, present, masks)  # (128, N, 1): every subset once
        values = ab.auc(all_scores[..., 0], labels)  # (128,)
        checks["loo"] = values[-1] - values[ab.subset_index(loo)]  # leave-one-out drops, read from the subsets
        checks["efficiency"] = float((ab.shapley_matrix(m) @ values.double()).sum() - (values[-1] - values[0]))

    def dense() -> None:
        cached = collect_outputs(model, batches, ("vectors", "present"))
        values = ab.auc(
            ab.subset_scores_dense(model, cached["vectors"], cached["present"], masks)[..., 0], labels
        )  # (128,)
        checks["dense_efficiency"] = float((ab.shapley_matrix(m) @ values.double()).sum() - (values[-1] - values[0]))

    def per_call() -> None:
        cached = collect_outputs(model, batches, ("vectors", "present"))
        values = ab.auc(
            ab.subset_scores(WithoutRowCache(model), cached["vectors"], cached["present"], masks)[..., 0], labels
        )  # (128,)
        checks["per_call_efficiency"] = float((ab.shapley_matrix(m) @ values.double()).sum() - (values[-1] - values[0]))

    def sampled() -> None:
        cached = collect_outputs(model, batches, ("vectors", "present"))
        orders, prefixes = ab.permutation_prefixes(m, SAMPLED_ORDERS, seed=0)  # (P, M), (P, M+1, M)
        unique, where = torch.unique(prefixes.reshape(-1, m), dim=0, return_inverse=True)
        values = ab.auc(ab.subset_scores(model, cached["vectors"], cached["present"], unique)[..., 0], labels)  # (U,)
        checks["sampled"] = ab.permutation_shapley(values.double()[where].view(orders.shape[0], m + 1), orders)
        checks["exact"] = (
            ab.shapley_matrix(m)
            @ ab.auc(ab.subset_scores(model, cached["vectors"], cached["present"], masks)[..., 0], labels).double()
        )

    def naive() -> None:
        for keep in masks[:NAIVE_SAMPLE]:
            out = torch.cat([model.fuse(*_masked(model, b, keep)).logits for b in batches])
            ab.auc(out[:, 0], labels)

    with torch.inference_mode():
        single = best_seconds(one_pass, repeats)
        cached = best_seconds(ours, repeats)
        every = best_seconds(dense, 1)
        gathered = best_seconds(per_call, 1)
        scaled = best_seconds(naive, 1) / NAIVE_SAMPLE * (masks.shape[0] + m + 1)
        sampled()
    assert max(abs(checks[k]) for k in ("efficiency", "dense_efficiency", "per_call_efficiency")) < 1e-9 and checks[
        "loo"
    ].shape == (m,)
    phi, se = checks["sampled"]
    return {
        "one_pass_s": round(single, 3),
        "ours_s": round(cached, 3),
        "dense_s": round(every, 3),
        "naive_s_scaled": round(scaled, 2),
        "cost_vs_one_pass": round(cached / single, 2),
        "dense_cost_vs_one_pass": round(every / single, 2),
        "speedup_vs_dense": round(every / cached, 2),
        "speedup_vs_naive": round(scaled / cached, 1),
        "per_call_s": round(gathered, 3),
        "speedup_vs_per_call": round(gathered / cached, 2),
        "sampled_orders": SAMPLED_ORDERS,
        "sampled_max_abs_error": round(float((phi - checks["exact"]).abs().max()), 5),
        "sampled_max_se": round(float(se.max()), 5),
        "sampled_max_error_in_se": round(float(((phi - checks["exact"]).abs() / se).max()), 2),
    }


class WithoutRowCache:
    """``model`` with its compact path as it was before ``compact_fuser`` did per-row work once:
    each fusion call gathers its rows' kept vectors and fuses them from scratch."""

    def __init__(self, model) -> None:
        self.model = model

    def compact_fuser(self, vectors):
        return lambda rows, slots: self.model.fuse_compact(vectors[rows.unsqueeze(1), slots], slots)


def _masked(model, batch, keep):
    vectors, present = model.encode(batch)  # the whole model again, per subset
    return vectors, present & keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 rows instead of 16,000")
    args = parser.parse_args()
    rows = 4_000 if args.quick else 16_000
    with tempfile.TemporaryDirectory(prefix="bench-ablate-") as tmp:
        synth.generate(rows, Path(tmp) / "data", seed=0, progress=False)
        spec = FeatureSpec.fit(load_schema(Path(tmp) / "data" / "schema.toml"), Path(tmp) / "data", validate=False)
        batches = list(ParquetBatchReader(spec, Path(tmp) / "data", batch_size=1024, label_columns=["clicked"]))
    labels = torch.cat([b.labels["clicked"] for b in batches])
    result = {"modalities": len(spec.names), "subsets": 2 ** len(spec.names), "rows": rows}
    for fusion in ("transformer", "deepset"):
        torch.manual_seed(0)
        model = build_model(spec.model_inputs(), dim=64, layers=1, heads=4, fusion=fusion, fusion_pooling="mean").eval()
        measure(model, batches[:1], labels[: batches[0].num_rows], repeats=1)  # warm-up
        figures = measure(model, batches, labels)
        print(
            f"{fusion:>11} fusion: one pass {figures['one_pass_s']:.2f} s; loo + Shapley with cached vectors {figures['ours_s']:.2f} s "
            f"= {figures['cost_vs_one_pass']:.2f}x one pass; every subset over all slots {figures['dense_s']:.2f} s "
            f"({figures['dense_cost_vs_one_pass']:.2f}x, {figures['speedup_vs_dense']:.2f}x slower than ours); naive {figures['naive_s_scaled']:.1f} s "
            f"-> {figures['speedup_vs_naive']:.1f}x faster; without the per-row first layer {figures['per_call_s']:.2f} s "
            f"({figures['speedup_vs_per_call']:.2f}x slower than ours)"
        )
        print(
            f"{'':>11} sampled Shapley, {SAMPLED_ORDERS} orders: max |error| {figures['sampled_max_abs_error']:.4f} vs exact = "
            f"{figures['sampled_max_error_in_se']:.2f} standard errors (largest SE {figures['sampled_max_se']:.4f})"
        )
        result[fusion] = figures
    result["cost_vs_one_pass"] = result["transformer"]["cost_vs_one_pass"]
    result["speedup_vs_naive"] = result["transformer"]["speedup_vs_naive"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
