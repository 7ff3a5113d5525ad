"""Self-attention over variable-length rows on CPU: which layout? (the choice in summarize.py)

    python -m benchmarks.speed.attention --quick

Rows with click-history lengths (lognormal, median 20, cut at 200; 85% present), D=128,
4 heads, one attention block (qkv projection, attention, output projection), inference:
(a) length buckets (deepsets.summarize.JaggedSelfAttention, what the model uses);
(b) torch's jagged nested tensors (torch.nested, layout=torch.jagged) through
    scaled_dot_product_attention;
(c) every row padded to max_len=200 with a key mask;
(d) one bucket per distinct length (no merging): shows what merging buys.
Outputs are checked to agree before timing. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.speed.timing import best_seconds
from deepsets.jagged import bucket_layout, length_buckets
from deepsets.summarize import JaggedSelfAttention

DIM, HEADS, MAX_LEN = 128, 4, 200


def history_lengths(rows: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(20), 1.0, rows)), 1, 500).astype(np.int64)
    lengths = np.minimum(lengths, MAX_LEN) * (rng.random(rows) < 0.85)
    return torch.from_numpy(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    torch.manual_seed(0)
    lengths = history_lengths(args.rows, seed=0)
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    tokens = torch.randn(int(offsets[-1]), DIM)
    attention = JaggedSelfAttention(DIM, HEADS).eval()
    merged = bucket_layout(offsets, length_buckets(lengths))
    exact = bucket_layout(offsets, length_buckets(lengths, max_waste=0.0, min_tokens=0))

    def bucketed(layout):
        with torch.no_grad():
            return attention(tokens, layout)

    present = lengths > 0
    nested_offsets = torch.zeros(int(present.sum()) + 1, dtype=torch.int64)
    torch.cumsum(lengths[present], 0, out=nested_offsets[1:])

    def nested():
        with torch.no_grad():
            qkv = attention.qkv(tokens)  # (N, 3D)
            q, k, v = (
                torch.nested.nested_tensor_from_jagged(
                    part.reshape(-1, HEADS, DIM // HEADS).contiguous(), nested_offsets
                ).transpose(1, 2)
                for part in qkv.chunk(3, dim=1)
            )
            out = F.scaled_dot_product_attention(q, k, v)  # (R, H, j, Dh) nested
            return attention.out(out.transpose(1, 2).values().reshape(-1, DIM))

    steps = torch.arange(MAX_LEN)
    mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)
    index = (offsets[:-1].unsqueeze(1) + steps.unsqueeze(0)) * mask

    def padded():
        with torch.no_grad():
            b = lengths.numel()
            x = tokens[index.reshape(-1)].reshape(b, MAX_LEN, DIM)  # (B, L, D)
            qkv = attention.qkv(x).reshape(b, MAX_LEN, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
            keys = mask.clone()
            keys[~present, 0] = True
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=keys[:, None, None, :])
            out = attention.out(out.transpose(1, 2).reshape(b, MAX_LEN, DIM))
            return out[mask]

    reference = bucketed(merged)
    for name, value in (("nested", nested()), ("padded", padded()), ("exact", bucketed(exact))):
        torch.testing.assert_close(value, reference, atol=1e-4, rtol=1e-4, msg=f"{name} disagrees")
    t = {
        "buckets": best_seconds(lambda: bucketed(merged), repeats, warmup=True),
        "nested_jagged": best_seconds(nested, repeats, warmup=True),
        "padded_to_max_len": best_seconds(padded, repeats, warmup=True),
        "one_bucket_per_length": best_seconds(lambda: bucketed(exact), repeats, warmup=True),
    }
    rows = args.rows
    result = {k + "_rows_per_s": round(rows / v) for k, v in t.items()}
    result.update(
        {
            "rows": rows,
            "buckets": len(merged.token_index),
            "speedup_vs_nested": round(t["nested_jagged"] / t["buckets"], 2),
            "speedup_vs_padded": round(t["padded_to_max_len"] / t["buckets"], 2),
            "speedup_vs_one_bucket_per_length": round(t["one_bucket_per_length"] / t["buckets"], 2),
            "threads": torch.get_num_threads(),
        }
    )
    print(
        f"buckets ({result['buckets']}) {result['buckets_rows_per_s']:,} rows/s | nested jagged {result['nested_jagged_rows_per_s']:,} | "
        f"padded to 200 {result['padded_to_max_len_rows_per_s']:,} | one bucket per length {result['one_bucket_per_length_rows_per_s']:,}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
