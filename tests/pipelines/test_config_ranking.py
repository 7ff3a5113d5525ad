"""The run config's ranking, two-tower, epoch-selection and negatives settings: each problem named,
and what they reach (the builder, the item table path)."""

from __future__ import annotations

import pytest

from deepsets.pipelines import config as C
from deepsets.pipelines.config import (
    load_run_config,
)
from tests.pipelines.config_files import MINIMAL, config_error, with_lines, write


@pytest.mark.parametrize(
    "task,data,problem",
    [
        ('kind = "listwise"', "", "data.group_column: a listwise task ranks rows within query groups"),
        (
            'kind = "pairwise"\nnum_outputs = 2',
            'group_column = "query_id"',
            "task.num_outputs: a pairwise task has exactly 1 output (found 2)",
        ),
        (
            'kind = "binary"',
            'group_column = "query_id"',
            "data.group_column: is used only by listwise / pairwise tasks",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]',
            "",
            "data.item_column: a two_tower task needs the integer item id column",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]',
            'item_column = "item_id"',
            "task.item_modalities: a two_tower task needs both",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["image"]\nitem_modalities = ["image"]',
            'item_column = "item_id"',
            "task.item_modalities: a modality belongs to one tower, found in both: ['image']",
        ),
        (
            'kind = "binary"\nquery_modalities = ["image"]',
            "",
            "task.query_modalities: query_modalities / item_modalities are used only by two_tower",
        ),
        ('kind = "binary"', 'item_column = "item_id"', "data.item_column: is used only by two_tower tasks"),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nshortcuts = [["image", "history"]]',
            'item_column = "item_id"',
            "task.shortcuts: each pair is [query modality, item modality]: ['image', 'history'] must pair one of ['history'] with one of ['image']",
        ),
        (
            'kind = "binary"\nshortcuts = [["history", "image"]]',
            "",
            "task.shortcuts: shortcuts are used only by two_tower",
        ),
        (
            'kind = "listwise"',
            'group_column = "query_id"\nlabel_columns = ["a", "b"]',
            "data.label_columns: a listwise task ranks by one relevance column",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]',
            'item_column = "item_id"\nlabel_columns = ["clicked"]',
            "data.label_columns: a two_tower task learns from (query, item) rows and reads no labels",
        ),
    ],
)
def test_ranking_task_problems_are_named(tmp_path, task, data, problem):
    no_labels = "two_tower" in task or "label_columns" in data
    text = with_lines(MINIMAL.replace('label_columns = ["clicked"]\n', "") if no_labels else MINIMAL, "task", task)
    if data:
        text = with_lines(text, "data", data)
    err = config_error(write(tmp_path, text))
    assert len(err.problems) == 1 and err.problems[0].startswith(problem), err.problems


def test_two_tower_config_reaches_the_builder(tmp_path):
    text = with_lines(
        with_lines(
            MINIMAL.replace('label_columns = ["clicked"]\n', ""),
            "task",
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\ntemperature = 0.1\nshortcuts = [["history", "image"]]',
        ),
        "data",
        'item_column = "item_id"',
    )
    cfg = C.load_run_config(write(tmp_path, text))
    args = cfg.model_args()
    assert args.task == "two_tower" and args.query_modalities == ("history",) and args.item_modalities == ("image",)
    assert args.temperature == 0.1 and args.to_dict()["query_modalities"] == ["history"]
    assert args.shortcuts == (("history", "image"),) and args.to_dict()["shortcuts"] == [["history", "image"]]
    assert (
        "query_modalities" not in C.load_run_config(write(tmp_path, MINIMAL)).model_args().to_dict()
    )  # older checkpoints still resume


@pytest.mark.parametrize(
    "valid, training, problem",
    [
        (
            True,
            'select = "valid_ndcg_at_10"',
            "training.select: a binary run reports valid_loss, valid_auc, valid_log_loss (or \"last\"; found 'valid_ndcg_at_10')",
        ),
        (
            True,
            'select = "last"\npatience = 2',
            'training.patience: patience needs a metric to watch: set select to a validation metric, not "last"',
        ),
        (
            False,
            "patience = 2",
            "training.patience: selecting an epoch on a validation metric (select, patience) needs data.valid",
        ),
        (
            False,
            'select = "valid_auc"',
            "training.select: selecting an epoch on a validation metric (select, patience) needs data.valid",
        ),
    ],
)
def test_epoch_selection_problems_are_named(tmp_path, valid, training, problem):
    text = with_lines(MINIMAL, "data", 'valid = "data/valid/"') if valid else MINIMAL
    err = config_error(write(tmp_path, with_lines(text, "training", training)))
    assert err.problems == [problem]


def test_epoch_selection_defaults_per_task(tmp_path):
    from deepsets.pipelines.training.selection import Selection

    cfg = load_run_config(write(tmp_path, with_lines(MINIMAL, "data", 'valid = "data/valid/"')))
    assert (cfg.training.select, cfg.training.patience) == ("", 0)
    assert Selection.of("", 0, "binary", 10, True) == Selection("valid_auc", 0)
    assert Selection.of("", 0, "binary", 10, False) == Selection(None, 0)  # no validation data: the last epoch
    assert Selection.of("", 3, "listwise", 5, True) == Selection("valid_ndcg_at_5", 3)
    assert Selection.of("last", 0, "regression", 10, True).metric is None
    rmse = Selection.of("", 0, "regression", 10, True)
    assert rmse.metric == "valid_rmse" and rmse.score({"valid_rmse": 2.0}) == -2.0 and not rmse.higher_is_better
    assert Selection("valid_auc").score({"valid_auc": float("nan")}) == float("-inf")  # a one-class set ranks lowest


@pytest.mark.parametrize(
    "task, data, problem",
    [
        (
            'kind = "binary"\nnegatives = "mixed"',
            'items = "items.parquet"',
            "task.negatives: is used only by two_tower tasks (task.kind = 'binary')",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nnegatives = "catalogue"',
            'item_column = "item_id"',
            "data.items: catalogue negatives come from the item table: give data.items",
        ),
        (
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]',
            'item_column = "item_id"\nitems = "items.parquet"',
            "data.items: the item table is used only by mixed or catalogue negatives (task.negatives)",
        ),
    ],
)
def test_negatives_problems_are_named(tmp_path, task, data, problem):
    text = with_lines(
        MINIMAL.replace('label_columns = ["clicked"]\n', "") if "two_tower" in task else MINIMAL, "task", task
    )
    err = config_error(write(tmp_path, with_lines(text, "data", data)))
    assert len(err.problems) == 1 and err.problems[0].startswith(problem), err.problems


def test_the_item_table_path_resolves_like_the_data(tmp_path):
    text = with_lines(
        with_lines(
            MINIMAL.replace('label_columns = ["clicked"]\n', ""),
            "task",
            'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nnegatives = "mixed"',
        ),
        "data",
        'item_column = "item_id"\nitems = "items.parquet"',
    )
    cfg = load_run_config(write(tmp_path, text))
    assert (
        cfg.data.items == (f"{tmp_path}/items.parquet",)
        and cfg.task.num_negatives == 1024
        and cfg.task.refresh_steps == 1
    )
