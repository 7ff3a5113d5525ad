"""Cost of leave-one-out + exact Shapley with cached modality vectors, on M = 7 modalities.

    python -m benchmarks.ablate --quick

The same rows (recsys-6 reference workload, pre-collated batches of 1024), two models built
like the demo's (D=64, 1 layer per sequence modality), one with transformer fusion and one with
DeepSet mean fusion:

(a) one plain evaluation pass: ``model(batch)`` over every row, plus its AUC;
(b) ours: encode every row once, then leave-one-out (M + 1 fusions) and exact Shapley (all
    2^7 = 128 subsets) rerunning only the fusion head, with the AUC of each;
(c) naive: the whole model (encoders too) rerun per subset; timed on 16 subsets and scaled to
    the 135 evaluations (b) does.

The last line printed is one JSON object (the transformer-fusion model's figures first).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from deepsets import ablation as ab
from deepsets.builders import build_model
from features import synth
from features.reader import ParquetBatchReader
from features.schema import load_schema
from features.spec import FeatureSpec

NAIVE_SAMPLE = 16


def measure(model, batches, labels) -> dict:
    m = len(model.names)
    masks = ab.subset_masks(m)
    loo = ~torch.eye(m, dtype=torch.bool)
    with torch.inference_mode():
        started = time.perf_counter()
        logits = torch.cat([model(b).logits for b in batches])  # (N, 1)
        ab.auc(logits[:, 0], labels)
        one_pass = time.perf_counter() - started

        started = time.perf_counter()
        vectors, present = ab.encode_all(model, batches)
        base = ab.subset_scores(model, vectors, present, torch.ones(1, m, dtype=torch.bool))
        loo_scores = ab.subset_scores(model, vectors, present, loo)
        all_scores = ab.subset_scores(model, vectors, present, masks)
        values = ab.auc(all_scores[..., 0], labels)  # (128,)
        ab.auc(torch.cat([base, loo_scores])[..., 0], labels)
        phi = ab.shapley_matrix(m) @ values.double()
        ours = time.perf_counter() - started

        started = time.perf_counter()
        for keep in masks[:NAIVE_SAMPLE]:
            out = torch.cat([model.fuse(*_masked(model, b, keep)).logits for b in batches])
            ab.auc(out[:, 0], labels)
        naive = (time.perf_counter() - started) / NAIVE_SAMPLE * (masks.shape[0] + m + 1)
    assert abs(float(phi.sum()) - float(values[-1] - values[0])) < 1e-9
    return {"one_pass_s": round(one_pass, 3), "ours_s": round(ours, 3), "naive_s_scaled": round(naive, 2),
            "cost_vs_one_pass": round(ours / one_pass, 2), "speedup_vs_naive": round(naive / ours, 1)}


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
        measure(model, batches[:1], labels[: batches[0].num_rows])  # warm-up
        figures = measure(model, batches, labels)
        print(f"{fusion:>11} fusion: one pass {figures['one_pass_s']:.2f} s; loo + Shapley with cached vectors {figures['ours_s']:.2f} s "
              f"= {figures['cost_vs_one_pass']:.2f}x one pass (goal <= 2); naive {figures['naive_s_scaled']:.1f} s "
              f"-> {figures['speedup_vs_naive']:.1f}x faster")
        result[fusion] = figures
    result["cost_vs_one_pass"] = result["transformer"]["cost_vs_one_pass"]
    result["speedup_vs_naive"] = result["transformer"]["speedup_vs_naive"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
