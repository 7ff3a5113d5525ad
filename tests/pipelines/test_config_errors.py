"""Every problem of a run config is reported at once, one line each, starting with its dotted
location (``training.lr: ...``), the schema section's included."""

from __future__ import annotations

import pytest

from deepsets.features.errors import SchemaError
from deepsets.features.schema import FeatureSchema
from deepsets.pipelines.config import load_run_config
from tests.pipelines.config_files import FULL, MINIMAL, SCHEMA_TOML, config_error, with_lines, write

# --- bad configs: one line naming the field ------------------------------------------------


@pytest.mark.parametrize(
    "section, line, problem",
    [
        ("training", "lr = -1", "training.lr: Input should be greater than 0 (found -1)"),
        (
            "model",
            'fusion = "set"',
            "model.fusion: Input should be 'deepset', 'attention', 'transformer', 'concat', 'tmm_deepset' "
            "or 'mmt' (found 'set')",
        ),
        ("model", "heads = 3", "model.heads: must divide model.dim (heads = 3, dim = 128)"),
        ("model", "dropout = 1.0", "model.dropout: Input should be less than 1 (found 1.0)"),
        ("training", "epochs = true", "training.epochs: Input should be a valid integer (found True)"),
        ("training", "lr = nan", "training.lr: Input should be a finite number (found nan)"),
        ("training", 'optimiser = "sgd"', "training.optimiser: unknown field (did you mean 'optimizer'?)"),
        (
            "scaling",
            "gpus = 1",
            "scaling.gpus: unknown field (expected one of workers, use_gpu, cpus_per_worker, max_failures, trainer)",
        ),
        ("task", "num_outputs = 3", "task.num_outputs: a binary task has exactly 1 output (found 3)"),
        ("task", 'kind = "multilabel"', "task.num_outputs: a multilabel task needs at least 2 labels (found 1)"),
        ("data", "label_columns = []", "data.label_columns: a binary task needs at least one label column"),
        ("data", 'label_columns = ["a", "a"]', "data.label_columns: columns listed twice: ['a']"),
        (
            "tracking",
            'run_name = "a/b"',
            "tracking.run_name: may hold only letters, digits, '_', '-' and '.' (it names a directory) (found 'a/b')",
        ),
    ],
)
def test_one_bad_field_gives_one_line_naming_it(tmp_path, section, line, problem):
    text = MINIMAL.replace('label_columns = ["clicked"]\n', "") if line.startswith("label_columns") else MINIMAL
    path = write(tmp_path, with_lines(text, section, line))
    err = config_error(path)
    assert err.problems == [problem]
    assert str(err) == f"{path}: {problem}"


def test_several_problems_are_reported_at_once(tmp_path):
    text = """
    [data]
    label_columns = "clicked"

    [schema]
    path = "schema.toml"

    [model]
    dim = 100
    heads = 8
    fusion = "tmm_deepset"
    fusion_pooling = "median"

    [task]
    kind = "multiclass"
    num_outputs = 1

    [training]
    lr = -1
    batch_size = 100

    [scaling]
    workers = 3

    [tracking]
    experiment = ""

    [extra]
    x = 1
    """
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.problems == [
        "extra: unknown section (expected one of data, schema, model, task, training, scaling, tracking)",
        "data.train: Field required",
        "data.label_columns: Input should be a list (found 'clicked')",
        "training.lr: Input should be greater than 0 (found -1)",
        "tracking.experiment: String should have at least 1 character (found '')",
        "model.heads: must divide model.dim (heads = 8, dim = 100)",
        "model.fusion_pooling: fusion 'tmm_deepset' supports sum, mean, max (found 'median')",
        "task.num_outputs: a multiclass task needs at least 2 classes (found 1)",
        "training.batch_size: must be divisible by scaling.workers (batch_size = 100, workers = 3; "
        "the global batch is split evenly across workers)",
    ]
    assert str(err).startswith(f"{path}: 9 problems: extra: unknown section")


def test_cross_checks_run_beside_a_bad_field_in_the_same_section(tmp_path):
    text = with_lines(MINIMAL, "model", "heads = 3", 'pooling = "sum"')
    err = config_error(write(tmp_path, text))
    assert err.problems == [
        "model.pooling: Input should be 'mean', 'max' or 'attention' (found 'sum')",
        "model.heads: must divide model.dim (heads = 3, dim = 128)",
    ]


def test_heads_need_not_divide_dim_when_nothing_attends(tmp_path):
    text = with_lines(MINIMAL, "model", "heads = 3", "layers = 0", 'fusion = "deepset"')
    assert load_run_config(write(tmp_path, text)).model.heads == 3
    text = with_lines(MINIMAL, "model", "heads = 3", "layers = 0", 'fusion = "mmt"')
    assert config_error(write(tmp_path, text)).problems == ["model.heads: must divide model.dim (heads = 3, dim = 128)"]


def test_batch_size_must_split_evenly_over_workers(tmp_path):
    path = write(tmp_path, with_lines(MINIMAL, "scaling", "workers = 3"))
    err = config_error(path)
    assert str(err) == (
        f"{path}: training.batch_size: must be divisible by scaling.workers (batch_size = 512, workers = 3; "
        "the global batch is split evenly across workers)"
    )
    assert load_run_config(path, ["training.batch_size=513"]).training.batch_size == 513


def test_a_section_that_is_not_a_table(tmp_path):
    path = write(tmp_path, "model = 3\n" + MINIMAL)
    assert config_error(path).problems == ["model: must be a table [model] (found 3)"]


def test_missing_required_sections(tmp_path):
    path = write(tmp_path, "[model]\ndim = 8\n")
    assert config_error(path).problems == [
        "data.train: Field required",  # label_columns is checked against task.kind once [data] is valid
        'schema: give either path = "schema.toml" or inline [[schema.modality]] tables',
    ]


# --- the schema section ------------------------------------------------------------------


def test_schema_given_both_as_path_and_inline(tmp_path):
    text = MINIMAL + '\n[[schema.modality]]\nname = "image"\nkind = "dense"\ndim = 4\n'
    path = write(tmp_path, text)
    assert str(config_error(path)) == (
        f'{path}: schema: give either path = "schema.toml" or inline id_column / [[schema.modality]] tables, not both'
    )


def test_inline_schema_problems_are_prefixed_with_schema(tmp_path):
    text = """
    [data]
    train = "t/"
    label_columns = ["y"]

    [schema]
    id_column = "item_id"
    colour = 1

    [[schema.modality]]
    name = "image"
    kind = "dense"
    dim = 0

    [[schema.modality]]
    name = "tags"
    kind = "id_bag"

    [[schema.modality]]
    name = "image"
    kind = "categorical"
    """
    err = config_error(write(tmp_path, text))
    assert err.problems == [
        "schema.colour: unknown field (expected one of path, id_column, modality)",
        "schema.modality name 'image' is declared 2 times (names must be unique)",
        "schema.modality[0] (image).dim: Input should be greater than 0 (found 0)",
        "schema.modality[1] (tags).kind: unknown kind 'id_bag' (expected one of categorical, dense, "
        "dense_sequence, id_sequence, id_set, numeric)",
    ]


def test_inline_schema_needs_modalities(tmp_path):
    text = MINIMAL.replace('path = "data/schema.toml"', 'id_column = "item_id"')
    assert config_error(write(tmp_path, text)).problems == ["schema.modality: Field required"]


def test_feature_schema_from_path_and_inline(tmp_path):
    write(tmp_path / "data", SCHEMA_TOML, "schema.toml")
    from_path = load_run_config(write(tmp_path, MINIMAL)).feature_schema()
    assert isinstance(from_path, FeatureSchema) and from_path.names == ["image"]
    inline = load_run_config(write(tmp_path, FULL)).feature_schema()
    assert inline.id_column == "item_id"
    assert inline.names == ["country", "history", "image", "profile"]


def test_feature_schema_reports_a_missing_schema_file(tmp_path):
    cfg = load_run_config(write(tmp_path, MINIMAL))
    with pytest.raises(SchemaError) as info:
        cfg.feature_schema()
    assert str(info.value) == f"{tmp_path}/data/schema.toml: cannot read schema file: No such file or directory"
