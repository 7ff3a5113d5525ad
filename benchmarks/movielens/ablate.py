"""Which modality of the MovieLens two-tower model earns its keep: ``deepsets ablate`` on the
models ``python -m benchmarks.movielens.benchmark`` trained, one per seed.

    python -m benchmarks.movielens.ablate [--work .cache/movielens] [--split test] [--negatives in_batch] [--epochs 5]

Each test user's held-out movie is ranked among all movies of ``items.parquet`` with the user's
earlier movies left out (``--exclude``), exactly as the benchmark's two-tower figures are. The
players are both towers' modalities (query: history, user_genres; item: movie id, title, genres,
year, imdb, budget, mpaa); item-tower subsets re-embed the catalogue from cached modality
vectors. Prints, per modality, the mean over seeds of exact Shapley, leave-one-out and only-one
(NDCG@10), the spread over seeds, and the seeds' bootstrap intervals; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.movielens.ease import has_recent, two_tower_data, two_tower_run
from benchmarks.movielens.retrieve import seen_pairs
from benchmarks.movielens.trained_runs import latest_finished_run
from deepsets.pipelines.models.checkpoint import EPOCH_FILE

METHODS = ("shapley", "loo", "only", "permute")
METRIC = "ndcg_at_10"


def checkpoints(work: Path, negatives: str, epochs: int, shortcut: bool = True) -> dict:
    """seed -> the checkpoint directory of each two-tower run in ``work/ray_results``: the one
    of the epoch the run kept (its MLflow run's ``deepsets.selected_epoch``, which the
    benchmark's figures are of), or the last one when the work's MLflow store does not say.
    ``shortcut``: the runs trained with the ``ease_recent`` / ``ease_item`` shortcut (``-sc``).

    Raises:
        SystemExit: when there is none (the benchmark has not been run).
    """
    data = two_tower_data(work)
    pattern = two_tower_run(
        negatives, "*", epochs, ease=data.name == "data_ease", recent=has_recent(data), shortcut=shortcut
    )
    found = {}
    for run in sorted((work / "ray_results").glob(pattern)):
        by_epoch = {
            json.loads((p / EPOCH_FILE).read_text())["epoch"] + 1: p
            for p in run.glob("checkpoint_*")
            if (p / EPOCH_FILE).is_file()
        }
        if not by_epoch:
            continue
        kept = kept_epoch(work, run.name)
        if kept not in by_epoch:
            print(
                f"{run.name}: the kept epoch is {'unknown' if kept is None else f'{kept}, not among the checkpoints'}; taking the last "
                f"(epoch {max(by_epoch)})",
                flush=True,
            )
            kept = max(by_epoch)
        found[int(run.name.split("-s")[-1].split("-e")[0])] = by_epoch[kept]
    if not found:
        raise SystemExit(
            f"no {pattern} checkpoints under {work / 'ray_results'}: run "
            f"`python -m benchmarks.movielens.benchmark --negatives {negatives} --epochs {epochs}{'' if shortcut else ' --no-shortcut'}` first"
        )
    return found


def kept_epoch(work: Path, run_name: str) -> int | None:
    """The epoch (from 1) the latest finished MLflow run ``run_name`` of ``work/mlflow.db`` kept."""
    if not (work / "mlflow.db").is_file():
        return None
    run = latest_finished_run(f"sqlite:///{(work / 'mlflow.db').absolute()}", "movielens", run_name)
    tag = run.data.tags.get("deepsets.selected_epoch") if run else None
    return int(tag) if tag else None


def ablate_seed(checkpoint: Path, data: Path, split: str, seen: Path, out: Path, bootstrap: int) -> dict:
    from deepsets.pipelines.ablation.config import parse_ablate_config
    from deepsets.pipelines.ablation.job import run_ablate

    cfg = parse_ablate_config(
        model=str(checkpoint),
        inputs=[str(data / f"{split}.parquet")],
        items=[str(data / "items.parquet")],
        exclude=str(seen),
        exclude_columns="query_event,movie_id",
        methods=list(METHODS),
        bootstrap=bootstrap,
        out=str(out),
        log_mlflow=False,
    )
    return run_ablate(cfg, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=".cache/movielens", help="the --work folder of benchmarks.movielens.benchmark"
    )
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--negatives", default="in_batch", help="which two-tower runs to ablate (their negatives)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument(
        "--no-shortcut",
        action="store_true",
        help="the runs trained without the shortcut (benchmarks.movielens.benchmark --no-shortcut)",
    )
    args = parser.parse_args()
    work = Path(args.work)
    data = two_tower_data(work)  # the folder the two-tower models were trained on
    runs = checkpoints(work, args.negatives, args.epochs, not args.no_shortcut)
    with tempfile.TemporaryDirectory() as tmp:
        pairs, _, _ = seen_pairs(data, args.split)
        pq.write_table(pairs, Path(tmp) / "seen.parquet")
        summaries = {
            seed: ablate_seed(
                path, data, args.split, Path(tmp) / "seen.parquet", Path(tmp) / f"s{seed}", args.bootstrap
            )
            for seed, path in runs.items()
        }
    first = next(iter(summaries.values()))
    names = first["modalities"] + ["query tower", "item tower"]
    cells = {
        seed: {(r["method"], r["modality"]): r for r in s["table"] if r["metric"] == METRIC}
        for seed, s in summaries.items()
    }
    print(
        f"{args.split}: {first['rows']} users, held-out movie ranked among {first['corpus_items']} movies, "
        f"{first['excluded_pairs']} seen pairs left out; seeds {', '.join(map(str, summaries))}"
    )
    print(
        "full "
        + METRIC
        + ": "
        + ", ".join(f"s{seed} {s['full']:.4f}" for seed, s in summaries.items())
        + " (none present: "
        + ", ".join(f"{s['empty']:.4f}" for s in summaries.values())
        + ")"
    )
    print(
        f"{'modality':<12} {'tower':<6} "
        + " ".join(f"{m + ' (sd)':>18}" for m in METHODS)
        + "   shapley 95% intervals by seed"
    )
    table = {}
    for name in names:
        tower = "" if name.endswith("tower") else ("query" if name in first["towers"]["query"] else "item")
        means = {}
        for method in METHODS:
            values = [c[(method, name)]["delta"] for c in cells.values() if (method, name) in c]
            if values:
                means[method] = {
                    "mean": statistics.mean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
        intervals = [
            f"[{c[('shapley', name)]['low']:+.4f}, {c[('shapley', name)]['high']:+.4f}]" for c in cells.values()
        ]
        table[name] = {"tower": tower, **means}
        print(
            f"{name:<12} {tower:<6} "
            + " ".join(
                f"{means[m]['mean']:>+9.4f} ({means[m]['sd']:.4f})" if m in means else f"{'-':>18}" for m in METHODS
            )
            + "   "
            + " ".join(intervals)
        )
    print(
        json.dumps(
            {
                "split": args.split,
                "metric": METRIC,
                "seeds": list(summaries),
                "full": {s: v["full"] for s, v in summaries.items()},
                "corpus_items": first["corpus_items"],
                "table": table,
                "seconds": {s: v["seconds"] for s, v in summaries.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
