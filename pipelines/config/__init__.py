"""The training run configuration: one TOML file, validated before anything runs.

Every problem is reported at once, one line each, starting with its dotted location::

    run.toml: 3 problems: training.lr: Input should be greater than 0 (found -1); model.fusion: ...

Example (every section but ``[data]`` and ``[schema]`` may be left out; defaults shown)::

    [data]
    train = "data/train/"            # a path or a list of paths: files, directories, globs
    valid = "data/valid/"            # optional
    label_columns = ["clicked"]         # not needed by two_tower
    # group_column = "query_id"        # listwise / pairwise: integer query id of each row
    # item_column = "item_id"          # two_tower: integer item id of each row
    # spec = "spec.json"             # optional: reuse a fitted FeatureSpec instead of fitting

    [schema]
    path = "data/schema.toml"        # or inline: id_column = ... and [[schema.modality]] tables

    [model]
    dim = 128
    layers = 1                       # per-sequence transformer layers (0 = pooling only)
    heads = 4                        # must divide dim
    ff_dim = 0                       # 0 = 4 * dim
    pooling = "mean"                 # mean | max | attention
    fusion = "transformer"           # deepset | attention | transformer | concat | tmm_deepset | mmt
    fusion_layers = 2
    fusion_pooling = "mean"          # sum | mean | max | min | median (tmm_deepset: sum | mean | max)
    dropout = 0.0
    modality_dropout = 0.0

    [task]
    kind = "binary"                  # binary | multilabel | multiclass | regression
                                     # | listwise | pairwise (need data.group_column)
                                     # | two_tower (needs data.item_column and the two lists below)
    num_outputs = 1
    # query_modalities = ["history"] # two_tower: the query tower's modalities
    # item_modalities = ["title"]    # two_tower: the item tower's modalities
    temperature = 0.07               # two_tower: starting softmax temperature (learned)
    # shortcuts = [["ease_recent", "ease_item"]]  # two_tower: (query, item) modality pairs whose own vectors also meet in the score
    logq = true                      # two_tower: logQ correction of in-batch negatives
    k = 10                           # ranking kinds: cutoff of the ndcg_at_k / recall_at_k metrics

    [training]
    epochs = 3
    batch_size = 512                 # the global batch, split evenly over scaling.workers
    optimizer = "adamw"              # adamw | adam | sgd
    lr = 1e-3
    weight_decay = 0.01
    schedule = "cosine"              # constant | cosine | linear
    warmup_steps = 0
    seed = 0
    grad_clip = 1.0                  # 0 = off

    [scaling]
    workers = 2
    use_gpu = false
    cpus_per_worker = 1
    max_failures = 0

    [tracking]
    mlflow_uri = ""                  # "" = sqlite:///mlflow.db in the working directory (deepsets train: $MLFLOW_TRACKING_URI first)
    experiment = "deepsets"
    run_name = ""                    # "" = generated from the time and a random suffix; also the Ray run name (--resume)
    storage_path = "ray_results"     # where Ray keeps checkpoints (a folder, or s3://bucket/prefix)
    artifact_location = ""           # where a new MLflow experiment keeps artifacts (s3://...; "" = MLflow's default)

The package, by concern: :mod:`.sections` (one pydantic model per section, and ``RunConfig``),
:mod:`.checks` (checks across fields), :mod:`.loading` (files, ``--set`` overrides, paths,
collecting every problem into one :class:`deepsets.pipelines.errors.ConfigError`), :mod:`.toml_text`
(writing a config back as TOML).

Relative paths in the file are relative to the file's directory; :mod:`.loading` says how each
path is resolved.
"""

from deepsets.pipelines.config.loading import load_run_config, parse_run_config
from deepsets.pipelines.config.sections import (
    SECTIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    ScalingConfig,
    SchemaConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "SECTIONS",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "ScalingConfig",
    "SchemaConfig",
    "TaskConfig",
    "TrackingConfig",
    "TrainingConfig",
    "load_run_config",
    "parse_run_config",
]
