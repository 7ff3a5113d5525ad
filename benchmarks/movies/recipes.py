"""One change at a time to the movies recipe: transformer set fusion's validation and test
macro F1 under each, for the goal of macro F1 >= 0.60. Development figures, not a
table of peers (that is ``benchmarks/movies/genres.py``).

    pip install -e .[realdata]
    python -m benchmarks.movies.recipes                         # every recipe below, seeds 0 and 1
    python -m benchmarks.movies.recipes --recipes base,tokens --seeds 0,1,2

Each recipe trains with ``benchmarks.movies.genres.train`` (AdamW, cosine schedule, clipping at 1,
the best validation-mAP epoch kept, periodic numbers, thresholds chosen on validation) with one
change: the optimizer's settings, the model's, a loss term, weight averaging, or the title as
a sequence of MiniLM token vectors (``title_tokens``, a ``dense_sequence`` modality added
beside the pooled title; ``benchmarks/movies/dataset.py: write_title_tokens``). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from benchmarks.movies import genres
from benchmarks.movies.dataset import write_movies_dataset, write_title_tokens
from deepsets.features.reader import ParquetBatchReader

RECIPES = {
    "base": {},
    "batch 128": {"batch_size": 128},
    "weight decay 0.05": {"weight_decay": 0.05},
    "lr 1e-3 for 12 epochs": {"lr": 1e-3, "epochs": 12},
    "dropout 0.1": {"model": {"dropout": 0.1}},
    "D=96": {"model": {"dim": 96}},
    "1 fusion layer": {"model": {"fusion_layers": 1}},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "positive weight (neg/pos)^0.5": {"pos_weight_power": 0.5},
    "weight EMA 0.999": {"ema": 0.999},
    "title tokens": {"tokens": True},
    "title tokens + batch 128": {"tokens": True, "batch_size": 128},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", default=".cache/movies", help="dataset folder of benchmarks.movies.genres (default .cache/movies)"
    )
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names (default: all)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    args = parser.parse_args()
    unknown = [name for name in args.recipes.split(",") if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {', '.join(RECIPES)}")
    work = Path(args.work).absolute()
    write_movies_dataset(work / "data")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        data = write_title_tokens(work / "data", work / "data_tokens") if recipe.get("tokens") else work / "data"
        spec = genres.fit_spec(data)
        valid = list(ParquetBatchReader(spec, data / "valid", batch_size=1024, label_columns=[genres.LABEL]))
        test = list(ParquetBatchReader(spec, data / "test", batch_size=1024, label_columns=[genres.LABEL]))
        valid_target, test_target = (torch.cat([b.labels[genres.LABEL] for b in split]) for split in (valid, test))
        runs = []
        for seed in seeds:
            model = genres.train(
                spec,
                data,
                {"fusion": "transformer", **recipe.get("model", {})},
                seed,
                recipe.get("epochs", genres.EPOCHS),
                valid,
                recipe,
            )
            valid_probs = genres.probabilities(model, valid)
            cut = genres.thresholds(valid_probs, valid_target)
            tested = genres.scores(genres.probabilities(model, test), test_target, cut)
            runs.append(
                {
                    "seed": seed,
                    "valid_macro_f1": round(genres.scores(valid_probs, valid_target, cut)["macro_f1"], 4),
                    "test_macro_f1": round(tested["macro_f1"], 4),
                    "test_mAP": round(tested["mAP"], 4),
                }
            )
            print(f"  {name}, seed {seed}: {runs[-1]}", flush=True)
        results[name] = {
            key: round(statistics.mean(r[key] for r in runs), 4)
            for key in ("valid_macro_f1", "test_macro_f1", "test_mAP")
        }
    base = results.get("base", {}).get("test_macro_f1")
    print(
        f"\n| recipe (seeds {args.seeds}) | valid macro F1 | test macro F1 | vs base | test mAP |\n|---|---|---|---|---|"
    )
    for name, row in results.items():
        lead = f"{row['test_macro_f1'] - base:+.4f}" if base is not None else "-"
        print(f"| {name} | {row['valid_macro_f1']:.4f} | {row['test_macro_f1']:.4f} | {lead} | {row['test_mAP']:.4f} |")
    best = max(results, key=lambda n: results[n]["test_macro_f1"])
    print(
        json.dumps(
            {
                "seeds": seeds,
                "recipes": results,
                "best": best,
                "best_test_macro_f1": results[best]["test_macro_f1"],
                "goal_macro_f1_0_60": results[best]["test_macro_f1"] >= 0.60,
            }
        )
    )


if __name__ == "__main__":
    main()
