"""The workload the scaling benchmarks share (``scale``, ``scale_ceiling``, ``gpu``): synthetic
reference rows split over a few files, and the demo's model with one transformer layer.

    data = write_data(Path(tmp), rows=48_000, row_group_rows=2_048)   # tmp/{train,valid}, tmp/schema.toml
    cfg = demo_model_config(data, workers=2)
"""

from __future__ import annotations

from pathlib import Path

from deepsets.features import synth
from deepsets.pipelines.demo import default_demo_config

TRAIN_FILES = 8


def write_data(directory: Path, rows: int, row_group_rows: int, files: int = TRAIN_FILES) -> Path:
    """``directory/{train,valid}``: the training rows in ``files`` files, 1,000 validation rows."""
    per_file = -(-rows // files)
    synth.generate(rows, directory / "train", seed=0, rows_per_file=per_file, chunk_rows=row_group_rows, progress=False)
    synth.generate(1_000, directory / "valid", seed=1, rows_per_file=1_000, chunk_rows=row_group_rows, progress=False)
    (directory / "valid" / "schema.toml").rename(directory / "schema.toml")
    return directory


def demo_model_config(data: Path, workers: int):
    """The demo's run config with one transformer layer per sequence (the model of benchmarks/speed/ray_train.py)."""
    cfg = default_demo_config(data, workers=workers)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"layers": 1})})
