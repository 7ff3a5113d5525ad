"""Model speed on the reference rows: this set-fusion model vs the padded model vs MMT.

    python -m benchmarks.speed.model --quick

Same rows (batches of 512), D=128, 4 heads, 1 layer per sequence modality, 2 fusion layers:
(a) this model, transformer fusion, jagged tokens with length-bucketed attention;
(b) the padded implementation a user writes today (benchmarks/speed/padded_baseline.py);
(c) the MMT-style single transformer over all tokens (``fusion="mmt"``).
Batches are collated before timing (jagged for a and c, padded for b): only the model is timed.
The padding-free limit is the padded model's work divided by the real work, counted in
multiply-adds for the token-wise parts (projections, feed-forward) and the attention pairs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.padded_baseline import PaddedModel, is_sequence, pad_batch
from deepsets.builders import build_model
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.jagged import length_buckets
from deepsets.tasks import task_loss

DIM, HEADS, FF = 128, 4, 512


def timed(fn, batches, repeats: int) -> float:
    """Best rows/s over ``repeats`` passes (after one warm-up pass)."""
    fn(batches[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            fn(b)
        best = min(best, time.perf_counter() - start)
    return best


def work(batches, infos, max_lens):
    """Multiply-adds in the sequence transformers: padded vs real vs our bucketed layout."""
    token_macs = 4 * DIM * DIM + 2 * DIM * FF  # qkv + out projections, feed-forward
    pair_macs = 2 * DIM  # q.k and weights.v per (query, key) pair
    padded = real = bucketed = 0
    tokens_padded = tokens_real = pairs_padded = pairs_real = pairs_bucketed = 0
    for batch in batches:
        for info in infos:
            if not is_sequence(info):
                continue
            lengths = batch[info.name].lengths()
            width = max_lens[info.name]
            tokens_padded += batch.num_rows * width
            pairs_padded += batch.num_rows * width * width
            tokens_real += int(lengths.sum())
            pairs_real += int((lengths * lengths).sum())
            for rows in length_buckets(lengths):
                pairs_bucketed += rows.numel() * int(lengths[rows].max()) ** 2
    mmt_real = mmt_bucketed = 0  # MMT: one sequence per row, CLS + every token of every modality
    for batch in batches:
        total = 1 + sum(batch[i.name].lengths() for i in infos)  # (B,)
        mmt_real += int((total * total).sum())
        for rows in length_buckets(total):
            mmt_bucketed += rows.numel() * int(total[rows].max()) ** 2
    padded = tokens_padded * token_macs + pairs_padded * pair_macs
    real = tokens_real * token_macs + pairs_real * pair_macs
    bucketed = tokens_real * token_macs + pairs_bucketed * pair_macs
    return {
        "token_limit": tokens_padded / tokens_real,
        "attention_limit": pairs_padded / pairs_real,
        "padding_free_limit": padded / real,
        "padded_fraction_padded_model": 1 - real / padded,
        "padded_fraction_ours": 1 - real / bucketed,
        "padded_fraction_mmt_attention": 1 - mmt_real / mmt_bucketed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 batches of 512, 2 repeats")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n_batches, repeats = (4, 2) if args.quick else (args.batches, args.repeats)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        synth.generate(n_batches * 512, tmp, seed=0, progress=False)
        spec = FeatureSpec.fit(load_schema(Path(tmp) / "schema.toml"), tmp)
        batches = list(ParquetBatchReader(spec, tmp, batch_size=512, label_columns=["clicked"]))
    infos = spec.model_inputs()
    max_lens = {
        i.name: spec.modality(i.name).max_len or int(spec.fitted[i.name].stats["length_max"])
        for i in infos
        if is_sequence(i)
    }
    padded_batches = [(pad_batch(b, max_lens), b.labels["clicked"]) for b in batches]
    ours = build_model(infos, dim=DIM, heads=HEADS, layers=1, fusion="transformer", fusion_layers=2)
    mmt = build_model(infos, dim=DIM, heads=HEADS, fusion="mmt", fusion_layers=2)
    padded = PaddedModel(infos, max_lens, DIM, HEADS, fusion_layers=2)

    def infer(model, unpack):
        model.eval()

        def step(item):
            with torch.no_grad():
                unpack(model, item)

        return step

    def train(model, unpack, target):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()

        def step(item):
            loss = task_loss("binary", unpack(model, item), target(item))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    jagged = lambda model, b: model(b).logits  # noqa: E731
    flat = lambda model, item: model(item[0])  # noqa: E731
    rows = sum(b.num_rows for b in batches)
    result = {"rows": rows, "threads": torch.get_num_threads()}
    for phase, make in (("infer", lambda m, u, t: infer(m, u)), ("train", train)):
        t_ours = timed(make(ours, jagged, lambda b: b.labels["clicked"]), batches, repeats)
        t_pad = timed(make(padded, flat, lambda item: item[1]), padded_batches, repeats)
        t_mmt = timed(make(mmt, jagged, lambda b: b.labels["clicked"]), batches, repeats)
        result.update(
            {
                f"{phase}_rows_per_s": round(rows / t_ours),
                f"{phase}_padded_rows_per_s": round(rows / t_pad),
                f"{phase}_mmt_rows_per_s": round(rows / t_mmt),
                f"{phase}_speedup_vs_padded": round(t_pad / t_ours, 2),
                f"{phase}_speedup_vs_mmt": round(t_mmt / t_ours, 2),
            }
        )
    limits = work(batches, infos, max_lens)
    result.update({k: round(v, 3) for k, v in limits.items()})
    result["infer_fraction_of_limit"] = round(result["infer_speedup_vs_padded"] / limits["padding_free_limit"], 3)
    result["train_fraction_of_limit"] = round(result["train_speedup_vs_padded"] / limits["padding_free_limit"], 3)
    for phase in ("infer", "train"):
        print(
            f"{phase}: ours {result[f'{phase}_rows_per_s']:,} rows/s | padded {result[f'{phase}_padded_rows_per_s']:,} | "
            f"MMT {result[f'{phase}_mmt_rows_per_s']:,} | speedup vs padded {result[f'{phase}_speedup_vs_padded']}x, vs MMT {result[f'{phase}_speedup_vs_mmt']}x"
        )
    print(
        f"padding-free limit {limits['padding_free_limit']:.2f}x (tokens {limits['token_limit']:.2f}x, attention pairs "
        f"{limits['attention_limit']:.2f}x); padded model spends {limits['padded_fraction_padded_model']:.1%} of its sequence work on padding, "
        f"ours {limits['padded_fraction_ours']:.1%}, MMT {limits['padded_fraction_mmt_attention']:.1%} of its attention pairs"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
