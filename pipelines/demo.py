"""``deepsets demo``: the main job on embedded defaults, end to end on a small reference workload.

1. generate the recsys-6 workload (last part file held out for validation);
2. fit the feature spec and read every row back as batches (counts shown);
3. train with 2 CPU Ray Train workers, tracked in the local MLflow store
   (``sqlite:///mlflow.db`` in the working directory);
4. embed every row (train and validation) with the trained model as a batch job on Ray
   Data (``deepsets embed``), and show the output's first rows;
5. ablate the trained model on the validation split (``deepsets ablate``): leave-one-out,
   only-one, permutation and exact Shapley per modality, checked against the planted truth.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader, describe_counts
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.config import RunConfig, parse_run_config
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.report import describe_batch, format_stats, format_train_summary

PARTS = 6  # part files; the last one is the validation split


def default_demo_config(data_dir: str | os.PathLike, workers: int = 2) -> RunConfig:
    """The demo's run: ``data_dir/{train,valid}``, ``data_dir/schema.toml``, binary ``clicked``.

    The batch of 512 is rounded down to a multiple of ``workers`` so it splits evenly.
    """
    base = os.path.abspath(data_dir)
    raw = {
        "data": {"train": "train", "valid": "valid", "label_columns": ["clicked"]},
        "schema": {"path": "schema.toml"},
        # layers = 0: the workload plants order-free means in its sequences and sets, which
        # pooling alone expresses; a transformer layer per sequence modality learns the click
        # history more slowly on 25k rows (benchmarks/RESULTS.md, ablation against the truth)
        "model": {"dim": 64, "layers": 0, "heads": 4, "fusion": "transformer"},
        "task": {"kind": "binary", "num_outputs": 1},
        "training": {"epochs": 3, "batch_size": max(workers, 512 - 512 % max(workers, 1)), "lr": 2e-3},
        "scaling": {"workers": workers},
    }
    return parse_run_config(raw, "<demo config>", base_dir=base)


DEMO_MARKER = ".deepsets-demo-data"
"""The file the demo writes into the data folder it makes: only a folder holding it is replaced."""


def make_demo_data(data_dir: Path, rows: int, seed: int, progress: bool) -> dict:
    """``data_dir/{train,valid}`` Parquet parts plus ``schema.toml`` and ``truth.json``.

    An earlier demo's data there (a folder holding :data:`DEMO_MARKER`) is replaced, and an
    empty folder used; anything else is left alone, even a user's data in the same layout.

    Raises:
        JobError: when ``data_dir`` is a file, or a folder with files and no marker.
    """
    if data_dir.is_file():
        raise JobError(f"{data_dir} is a file, not a folder: choose another --out")
    if data_dir.exists():
        found = sorted(p.name for p in data_dir.iterdir())
        if found and not (data_dir / DEMO_MARKER).is_file():
            raise JobError(
                f"{data_dir} holds files the demo did not write ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}) "
                f"and no {DEMO_MARKER} file: the demo replaces only a data folder it made; move that folder away, "
                "or choose another --out"
            )
        shutil.rmtree(data_dir)
    generated = synth.generate(rows, data_dir / "all", seed=seed, rows_per_file=-(-rows // PARTS), progress=progress)
    parts = sorted((data_dir / "all").glob("part-*.parquet"))
    for split, files in (("train", parts[:-1]), ("valid", parts[-1:])):
        (data_dir / split).mkdir(parents=True)
        for f in files:
            f.rename(data_dir / split / f.name)
    for name in ("schema.toml", "truth.json"):
        (data_dir / "all" / name).rename(data_dir / name)
    (data_dir / "all").rmdir()
    (data_dir / DEMO_MARKER).write_text("written by deepsets demo; the next demo into this folder replaces it\n")
    return {"rows": generated["rows"], "train_files": len(parts) - 1, "valid_files": 1, "dir": str(data_dir)}


def embed_demo_data(model_uri: str, data_dir: Path, out: Path, workers: int, quiet: bool) -> dict:
    """``deepsets embed --model URI --input data_dir --output out --overwrite``; prints the
    summary, the command to rerun it, and the first rows written."""
    import pyarrow.parquet as pq

    from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
    from deepsets.pipelines.report import format_embed_summary, format_embeddings_head

    cfg = parse_embed_config(
        model=model_uri,
        inputs=[str(data_dir / "train"), str(data_dir / "valid")],
        output=str(out),
        workers=workers,
        overwrite=True,
    )
    summary = run_embed(cfg, progress=not quiet)
    if not quiet:
        print(format_embed_summary(summary))
        print(
            f"      the same from the shell: deepsets embed --model {model_uri} --input {data_dir / 'train'} {data_dir / 'valid'} "
            f"--output {out} --workers {workers} --overwrite"
        )
        first = sorted(Path(summary["output"]).glob("part-*.parquet"))[0]
        print(format_embeddings_head(pq.read_table(first).slice(0, 5)))
    return summary


def ablate_demo_model(model_uri: str, data_dir: Path, out: Path, quiet: bool) -> dict:
    """``deepsets ablate --model URI --input data_dir/valid --truth data_dir/truth.json``; prints
    the table and where the chart is."""
    from deepsets.pipelines.ablation.config import parse_ablate_config
    from deepsets.pipelines.ablation.job import run_ablate
    from deepsets.pipelines.ablation.report import markdown_table

    cfg = parse_ablate_config(
        model=model_uri,
        inputs=[str(data_dir / "valid")],
        out=str(out),
        bootstrap=100,
        truth=str(data_dir / "truth.json"),
        overwrite=True,
    )  # the demo owns its folder
    summary = run_ablate(cfg, progress=not quiet)
    if not quiet:
        print(markdown_table(summary))
        print(f"      chart: {summary['files']['chart']}; also logged to the MLflow run under ablation/")
    return summary


def run_demo(
    out_dir: str = "demo_output", rows: int = 60_000, seed: int = 0, workers: int = 2, quiet: bool = False
) -> dict:
    """Run the demo and return its summary (the ``--json`` object).

    Args:
        out_dir: working directory (data, spec, Ray checkpoints); MLflow's store is the
            working directory's ``mlflow.db``.
        rows: rows of synthetic data (5/6 train, 1/6 validation).
        seed: generator seed.
        workers: Ray Train workers.
        quiet: print nothing but errors (the caller prints JSON).
    """
    say = (lambda *a: None) if quiet else print
    started = time.perf_counter()
    out = Path(out_dir).absolute()
    data_dir = out / "data"
    say(f"[1/5] generating {rows} rows of the recsys-6 workload into {data_dir}")
    data = make_demo_data(data_dir, rows, seed, progress=not quiet)
    say(f"[2/5] fitting the feature spec on {data_dir / 'train'} and reading every row back")
    spec = FeatureSpec.fit(load_schema(data_dir / "schema.toml"), data_dir / "train", progress=not quiet)
    spec.save(out / "spec.json")
    say(format_stats(spec.stats()))
    reader = ParquetBatchReader(
        spec, data_dir / "train", batch_size=512, label_columns=["clicked", "labels"], progress=not quiet
    )
    batches, first = 0, None
    for batch in reader:
        batch.validate()
        first = first if first is not None else batch
        batches += 1
    say(describe_batch(first))
    say(f"[3/5] training on {workers} Ray Train workers (CPU), tracking in MLflow")
    cfg = default_demo_config(data_dir, workers=workers)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"spec": str(out / "spec.json")}),
            "tracking": cfg.tracking.model_copy(
                update={"storage_path": str(out / "ray_results"), "run_name": time.strftime("demo-%Y%m%d-%H%M%S")}
            ),
        }
    )
    reusable = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"run_name": ""})})
    (out / "run.toml").write_text(reusable.to_toml())  # without the demo's run name, so it can be reused
    say(f"      run config written to {out / 'run.toml'} (edit it, or pass --set, for your own runs)")
    from deepsets.pipelines.ray_processes import private_ray
    from deepsets.pipelines.training.run import run_training

    with private_ray(None, workers + 1):  # one local Ray for training and embedding, ended with them
        trained = run_training(cfg, progress=not quiet)
        say(format_train_summary(trained))
        say(f"[4/5] embedding all {data['rows']} rows with {trained['model_uri']} on {workers} Ray Data workers")
        embedded = embed_demo_data(trained["model_uri"], data_dir, out / "embedded", workers, quiet)
    say(f"[5/5] ablating the trained model on {data_dir / 'valid'} (per-modality contributions)")
    ablated = ablate_demo_model(trained["model_uri"], data_dir, out / "ablation", quiet)
    seconds = time.perf_counter() - started
    say(f"demo done in {seconds:.1f} s")
    return {
        "data": data,
        "read": {"rows": reader.rows_read, "batches": batches, "counts": describe_counts(reader.counts)},
        "train": trained,
        "embed": embedded,
        "ablate": {
            k: ablated[k]
            for k in ("rows", "metric", "full", "empty", "shapley_efficiency", "spearman_vs_truth", "files", "seconds")
        },
        "seconds": round(seconds, 2),
    }
