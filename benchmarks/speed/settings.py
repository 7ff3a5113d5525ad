"""What the main model settings cost: training and inference rows/s of the reference workload
as ``layers``, ``max_len`` (of the click history) and ``dim`` change, one at a time from the
demo's model (D=64, pooling only, transformer fusion), side by side in one run.

    python -m benchmarks.speed.settings --quick        # 2,048 rows; the full run uses 8,192
    python -m benchmarks.speed.settings --device cuda  # the same on a GPU (bf16 autocast)

Batches of 512 are collated before timing (only the model is timed); best of 3 passes. Ratios
are against the demo's model in the same run. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import tomllib
from pathlib import Path

import torch

from benchmarks.speed.timing import best_seconds
from deepsets.builders import build_model
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec
from deepsets.tasks import task_loss

BASE = {"dim": 64, "layers": 0, "heads": 4, "fusion": "transformer"}
VARIANTS = {
    "demo model (dim 64, layers 0, history max_len 200)": ({}, 200),
    "layers 1": ({"layers": 1}, 200),
    "layers 2": ({"layers": 2}, 200),
    "layers 1, history max_len 50": ({"layers": 1}, 50),
    "layers 0, history max_len 50": ({}, 50),
    "dim 32": ({"dim": 32}, 200),
    "dim 128": ({"dim": 128}, 200),
    "dim 128, layers 1": ({"dim": 128, "layers": 1}, 200),
}


def spec_with_history_len(data: Path, max_len: int) -> FeatureSpec:
    raw = tomllib.loads((data / "schema.toml").read_text())
    for m in raw["modality"]:
        if m["name"] == "history":
            m["max_len"] = max_len
    return FeatureSpec.fit(parse_schema(raw), data, validate=False)


def measure(spec: FeatureSpec, data: Path, model_args: dict, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), **{**BASE, **model_args}).to(device)
    batches = [b.to(device) for b in ParquetBatchReader(spec, data, batch_size=512, label_columns=["clicked"])]
    rows = sum(b.num_rows for b in batches)
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train() -> None:
        model.train()
        for b in batches:
            with amp:
                loss = task_loss("binary", model(b).logits.float(), b.labels["clicked"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    @torch.inference_mode()
    def infer() -> None:
        model.eval()
        for b in batches:
            with amp:
                model(b)
        if device == "cuda":
            torch.cuda.synchronize()

    params = sum(p.numel() for p in model.parameters())
    return {
        "train_rows_per_s": round(rows / best_seconds(train, repeats)),
        "infer_rows_per_s": round(rows / best_seconds(infer, repeats)),
        "parameters": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    rows = 2048 if args.quick else 8192
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth.generate(rows, data, seed=0, progress=False)
        specs = {n: spec_with_history_len(data, n) for n in sorted({length for _, length in VARIANTS.values()})}
        results = {
            name: measure(specs[length], data, model_args, args.device, repeats=3)
            for name, (model_args, length) in VARIANTS.items()
        }
    base = results[next(iter(VARIANTS))]
    print(f"\n{rows} rows, {args.device}, batches of 512, {torch.get_num_threads()} threads\n")
    print("| setting | train rows/s | vs demo | inference rows/s | vs demo | parameters |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['train_rows_per_s']:,} | {r['train_rows_per_s'] / base['train_rows_per_s']:.2f}x | "
            f"{r['infer_rows_per_s']:,} | {r['infer_rows_per_s'] / base['infer_rows_per_s']:.2f}x | {r['parameters']:,} |"
        )
    print(json.dumps({"rows": rows, "device": args.device, "results": results}))


if __name__ == "__main__":
    main()
