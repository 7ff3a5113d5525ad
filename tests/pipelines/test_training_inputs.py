"""What the driver checks before Ray starts: labels that fit the task, the world a resume
continues, complete checkpoints, MLflow parameters that fit."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features.errors import DataError
from deepsets.features.reader import ParquetBatchReader
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.training.inputs import check_training_data
from deepsets.pipelines.training.resume import check_resumable, checkpoint_dirs, epochs_done, save_run_record
from deepsets.pipelines.training.tracking import PARAM_LIMIT, param_value


@pytest.fixture
def data(demo_data, tmp_path):
    """A copy of the demo data (tests change files)."""
    copy = tmp_path / "data"
    shutil.copytree(demo_data, copy)
    return copy


def with_labels(path, column, values):
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), path)


def config(data, **model):
    cfg = default_demo_config(data, workers=1)
    return cfg.model_copy(update={"model": cfg.model.replace(**model)}) if model else cfg


def test_binary_labels_must_be_zero_or_one(data, demo_spec):
    check_training_data(config(data), demo_spec)
    first = sorted((data / "train").glob("*.parquet"))[1]
    rows = pq.read_metadata(first).num_rows
    with_labels(first, "clicked", pa.array(np.where(np.arange(rows) % 7 == 3, -1, 1).astype(np.int8)))
    with pytest.raises(
        DataError, match=rf"{first}, column 'clicked', rows 3\.\..* a binary task learns from 0 or 1 .*found \[-1\]"
    ):
        check_training_data(config(data), demo_spec)


def test_multiclass_ids_and_multilabel_widths(data, demo_spec):
    valid = next((data / "valid").glob("*.parquet"))
    rows = pq.read_metadata(valid).num_rows
    with_labels(valid, "clicked", pa.array(np.arange(rows) % 4, pa.int64()))
    cfg = config(data, task="multiclass", num_outputs=3)
    with pytest.raises(
        DataError,
        match=r"column 'clicked', rows 3\.\.\d+ \(\d+ rows\): a multiclass task learns from a class id in 0..2 \(task.num_outputs = 3\), found \[3\]",
    ):
        check_training_data(
            cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": cfg.data.valid})}), demo_spec
        )
    cfg = config(data, task="multilabel", num_outputs=4)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"label_columns": ("labels",)})})
    with pytest.raises(DataError, match="needs lists of 4 labels, found lists of 5"):
        check_training_data(cfg, demo_spec)


def test_resume_counts_epochs_and_refuses_changed_data_and_settings_but_takes_more_epochs(data, demo_spec, tmp_path):
    from deepsets.pipelines.models.checkpoint import TrainState, save_checkpoint

    cfg = config(data)
    run_dir = tmp_path / "run"
    save_run_record(cfg, run_dir)
    (run_dir / "checkpoint_000000").mkdir()
    save_checkpoint(
        run_dir / "checkpoint_000000", TrainState({}, {}, {}, 0, 10), demo_spec, cfg.as_dict(), cfg.model_args()
    )
    (run_dir / "checkpoint_000001").mkdir()  # a crash left the newest half-written
    assert checkpoint_dirs(run_dir) == [str(run_dir / "checkpoint_000000")]
    assert epochs_done(run_dir) == 1
    (run_dir / "checkpoint_000000" / "epoch.json").write_text('{"epoch": 4, "step": 50}')
    assert epochs_done(run_dir) == 5  # read from epoch.json, not from state.pt
    (run_dir / "checkpoint_000000" / "epoch.json").unlink()  # a checkpoint written before epoch.json
    assert epochs_done(run_dir) == 1
    assert check_resumable(cfg, run_dir) is None
    faster = cfg.model_copy(update={"training": cfg.training.model_copy(update={"lr": 0.01, "seed": 3})})
    with pytest.raises(JobError, match=r"changed world \(training.lr: 0.002 -> 0.01; training.seed: 0 -> 3\)"):
        check_resumable(faster, run_dir)
    longer = cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": 5})})
    assert "training.epochs 3 -> 5: the cosine schedule now spans 5 epochs" in check_resumable(longer, run_dir)
    assert json.loads((run_dir / "run.json").read_text())["training"]["epochs"] == 5
    touched = sorted((data / "train").glob("*.parquet"))[2]
    os.utime(touched, ns=(0, 0))
    with pytest.raises(JobError, match=rf"data.train: {touched} changed \(mtime_ns\)"):
        check_resumable(longer, run_dir)


def test_long_parameters_keep_their_start_and_a_hash():
    short = "data/train"
    assert param_value(short) == short
    long = ",".join(f"s3://bucket/data/part-{i:05d}.parquet" for i in range(200))
    shown = param_value(long)
    assert len(shown) <= PARAM_LIMIT and shown.startswith("s3://bucket/data/part-00000.parquet")
    assert f"({len(long)} chars, sha256 " in shown and param_value(long + "x") != shown


def ranking_config(data):
    cfg = config(data, task="listwise")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"group_column": "query_id"})})


def test_query_groups_must_be_stored_together_and_hold_no_nulls(data, demo_spec):
    # the demo writes each group's rows together (a few run on from one file into the next)
    check_training_data(ranking_config(data), demo_spec)
    first, second = sorted((data / "train").glob("*.parquet"))[:2]
    table = pq.read_table(first)
    groups = table["query_id"].to_numpy()
    moved = int(np.flatnonzero(groups == groups[0]).max())  # the first group's last row goes to the end
    order = np.r_[np.arange(moved), np.arange(moved + 1, table.num_rows), moved]
    pq.write_table(table.take(pa.array(order)), first)
    with pytest.raises(
        DataError,
        match=rf"{first}, column 'query_id': 1 query group\(s\) are split into separate runs of rows, "
        rf"e.g. group {groups[0]} at rows 0-{moved - 1}, {table.num_rows - 1}-{table.num_rows - 1}; "
        r"store each group's rows next to each other \(sort the whole training set by 'query_id', across files\)",
    ):
        check_training_data(ranking_config(data), demo_spec)
    middle = pq.read_table(second).slice(
        100, 1
    )  # a row of a group in the middle of the second file, copied into the first
    pq.write_table(middle, first)
    with pytest.raises(
        DataError,
        match=rf"{second}, column 'query_id': 1 query group\(s\) are in more than one file, "
        rf"e.g. group {middle['query_id'][0]}, also in {first}",
    ):
        check_training_data(ranking_config(data), demo_spec)
    ids = pq.read_table(second)["query_id"].to_pylist()
    with_labels(
        second,
        "query_id",
        pa.array([None if i == 5 else v for i, v in enumerate(ids)], table.schema.field("query_id").type),
    )
    with pytest.raises(DataError, match=rf"{second}, column 'query_id', row 5: null id"):
        check_training_data(ranking_config(data), demo_spec)


def empty_copy(source, target):
    """A Parquet file with ``source``'s columns and no rows."""
    pq.write_table(pq.read_table(source).slice(0, 0), target)
    return target


def test_an_empty_validation_file_among_others_is_skipped_with_a_note(data, demo_spec, capsys):
    valid = next((data / "valid").glob("*.parquet"))
    rows = pq.read_metadata(valid).num_rows
    empty = empty_copy(valid, data / "valid" / "part-00009.parquet")
    train_rows = check_training_data(config(data), demo_spec)
    assert train_rows == sum(pq.read_metadata(f).num_rows for f in (data / "train").glob("*.parquet"))
    assert capsys.readouterr().err == f"note: data.valid: {empty} has no rows; skipped\n"
    check_training_data(ranking_config(data), demo_spec)  # the group checks skip it too
    # what every worker reads from it: the other file's rows, once, over every share
    shares = [
        ParquetBatchReader(
            demo_spec, data / "valid", batch_size=256, label_columns=["clicked"], shard=(rank, 2), equal_shards=False
        )
        for rank in (0, 1)
    ]
    assert sum(batch.num_rows for reader in shares for batch in reader) == rows


def test_a_validation_set_with_no_rows_is_an_error_naming_its_files(data, demo_spec):
    valid = next((data / "valid").glob("*.parquet"))
    empty_copy(valid, valid)
    with pytest.raises(
        DataError,
        match=rf"^{valid}: data.valid has no rows \(its only file is empty\); "
        r"give validation files with rows, or leave data.valid out",
    ):
        check_training_data(config(data), demo_spec)
    second = empty_copy(valid, data / "valid" / "part-00009.parquet")
    with pytest.raises(DataError, match=rf"^data.valid has no rows \(every file is empty: {valid}, {second}\)"):
        check_training_data(config(data), demo_spec)


def test_a_training_set_with_no_rows_is_an_error_naming_its_files(data, demo_spec):
    files = sorted((data / "train").glob("*.parquet"))
    for path in files:
        empty_copy(path, path)
    with pytest.raises(
        DataError,
        match=rf"^data.train has no rows \(every file is empty: {files[0]}, {files[1]}, {files[2]} and 2 more\)",
    ):
        check_training_data(config(data), demo_spec)
