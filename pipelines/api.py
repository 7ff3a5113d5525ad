"""The Python API: each job of the ``deepsets`` command line as one function, taking the same typed
config the command builds and returning the same summary ``--json`` prints.

    import deepsets

    spec = deepsets.fit("data/schema.toml", "data/train", out="spec.json")
    cfg = deepsets.load_run_config("run.toml", ["training.epochs=2"])
    trained = deepsets.train(cfg)
    embedded = deepsets.embed(model=trained["model_uri"], inputs=["data/valid"], output="emb/")
    ablation = deepsets.ablate(deepsets.AblateConfig(model=trained["model_uri"], inputs=["data/valid"], out="ablation/"))

``import deepsets`` loads none of this: the names resolve on first use (``deepsets.__getattr__``),
so the model library alone stays free of Ray, MLflow and polars. Errors are the command line's:
:class:`~deepsets.pipelines.errors.ConfigError`, ``DataError`` and
:class:`~deepsets.pipelines.errors.JobError` name what is wrong.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from deepsets.features import storage
from deepsets.features.files import Paths
from deepsets.features.schema import FeatureSchema, load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.ablation.config import AblateConfig, parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.commands.training import with_env_tracking_uri
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.embedding.job import EmbedConfig, parse_embed_config, run_embed
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.retrieval.job import RetrieveConfig, parse_retrieve_config, run_retrieve
from deepsets.pipelines.training.run import run_training
from deepsets.pipelines.tuning.budget import parse_budget
from deepsets.pipelines.tuning.job import run_tune

PathLike = Union[str, os.PathLike]


def fit(
    schema: Union[FeatureSchema, PathLike],
    inputs: Paths,
    *,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    validate: bool = True,
    progress: bool = False,
) -> FeatureSpec:
    """Fit a feature spec on training Parquet (``deepsets fit``).

    Args:
        schema: a :class:`FeatureSchema` or the path of its TOML file.
        inputs: training Parquet files, directories or globs.
        out: where to save the spec JSON (local or ``s3://``); None keeps it in memory only.
        overwrite: replace an existing ``out`` (refused otherwise).
        validate: read every row back through the fitted spec, so bad values are reported now.
        progress: show a progress bar for that pass.

    Returns:
        The fitted :class:`FeatureSpec` (``spec.stats()`` holds what ``deepsets fit`` prints).

    Raises:
        SchemaError: for a bad schema file.
        DataError: for missing files or columns, wrong types or bad values (file, column, rows).
        JobError: when ``out`` exists and ``overwrite`` is False.
    """
    if out is not None and storage.exists(str(out)) and not overwrite:
        raise JobError(f"out {out} already exists: pass overwrite=True to replace it, or choose another path")
    if not isinstance(schema, FeatureSchema):
        schema = load_schema(schema)
    spec = FeatureSpec.fit(schema, inputs, validate=validate, progress=progress)
    if out is not None:
        spec.save(str(out))
    return spec


def train(config: RunConfig, *, resume: bool = False, ray_address: Optional[str] = None, progress: bool = True) -> dict:
    """Train on Ray Train and log the model to MLflow (``deepsets train``).

    Args:
        config: the run config (:func:`load_run_config` reads a TOML with ``--set`` style
            overrides; :class:`RunConfig` builds one in code). An empty
            ``tracking.mlflow_uri`` is taken from ``MLFLOW_TRACKING_URI`` when that is set.
        resume: continue the run named by ``tracking.run_name`` from its last checkpoint.
        ray_address: the Ray cluster to join (default: a local Ray, or the one already started).
        progress: print progress while training.

    Returns:
        The summary ``deepsets train --json`` prints: ``model_uri``, ``run_id``, ``metrics`` (the
        selected epoch's), ``selected``, ...

    Raises:
        DataError: for bad data.
        JobError: for a run name that exists without ``resume`` (or is missing with it).
        TrainingFailed: when training failed more often than ``scaling.max_failures`` allows.
    """
    return run_training(with_env_tracking_uri(config), resume=resume, ray_address=ray_address, progress=progress)


def embed(config: Optional[EmbedConfig] = None, /, *, progress: bool = True, **options) -> dict:
    """Embed Parquet rows with a trained model as a Ray Data job (``deepsets embed``).

    Args:
        config: an :class:`EmbedConfig`; or leave it out and pass its fields as keywords
            (``embed(model=uri, inputs=["data/"], output="emb/")``).
        progress: print progress while embedding.

    Returns:
        The summary ``deepsets embed --json`` prints: ``output``, ``rows_in``, ``rows_out``,
        ``rows_rejected``, ``rows_per_s``, ...

    Raises:
        ConfigError: for bad options (every one named).
        DataError, JobError: for bad input rows, or an output folder that does not allow it.
    """
    return run_embed(parse_embed_config(**_options(config, options)), progress=progress)


def ablate(config: Optional[AblateConfig] = None, /, *, progress: bool = True, **options) -> dict:
    """Per-modality contributions of a trained model (``deepsets ablate``).

    Args:
        config: an :class:`AblateConfig`; or leave it out and pass its fields as keywords
            (``ablate(model=uri, inputs=["data/valid"], out="ablation/")``).
        progress: print progress while ablating.

    Returns:
        The summary ``deepsets ablate --json`` prints: ``table``, ``files``, ``mlflow``, ...

    Raises:
        ConfigError: for bad options.
        DataError, JobError: for bad input rows, a model that cannot be ablated, or an output
            folder that does not allow it.
    """
    return run_ablate(parse_ablate_config(**_options(config, options)), progress=progress)


def retrieve(config: Optional[RetrieveConfig] = None, /, *, progress: bool = True, **options) -> dict:
    """Top-k items per query from two embedding folders (``deepsets retrieve``).

    Args:
        config: a :class:`RetrieveConfig`; or leave it out and pass its fields as keywords
            (``retrieve(items="item_emb/", queries="query_emb/", k=100, out="top100/")``).
        progress: print progress while searching.

    Returns:
        The summary ``deepsets retrieve --json`` prints.

    Raises:
        ConfigError: for bad options.
        DataError, JobError: for unusable embedding folders or an output folder that does not
            allow it.
    """
    return run_retrieve(parse_retrieve_config(**_options(config, options)), progress=progress)


def tune(
    config: PathLike,
    space: Optional[PathLike] = None,
    *,
    overrides: Sequence[str] = (),
    trials: Optional[int] = None,
    budget: Union[str, float, None] = None,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    ray_address: Optional[str] = None,
    progress: bool = True,
) -> dict:
    """Search a run config's settings on Ray Tune (``deepsets tune``); writes ``best.toml``.

    Args:
        config: the run config TOML every trial starts from (trials load it with their values).
        space: the search space TOML; None searches the default space.
        overrides: ``section.field=value`` set for every trial.
        trials: configurations to try (default: the space's, else 8, or as many as ``budget`` allows).
        budget: wall-clock time for the whole search: seconds, or text as ``--budget`` takes it
            (``"90s"``, ``"20m"``, ``"1h30m"``).
        out: output folder (default: ``tune-<date>-<time>``).
        overwrite: replace an earlier search's outputs in ``out``.
        ray_address: the Ray cluster to join.
        progress: print each trial as it ends.

    Returns:
        The summary ``deepsets tune --json`` prints: the trials, the best one, ``best.toml``.

    Raises:
        ValueError: for ``trials`` below 1 or a budget that cannot be read.
        ConfigError: a bad run config or space.
        JobError: ``out`` holds an earlier search and ``overwrite`` is False.
    """
    if trials is not None and trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    budget_s = parse_budget(budget) if isinstance(budget, str) else budget
    return run_tune(
        str(config),
        None if space is None else str(space),
        overrides=overrides,
        trials=trials,
        budget_s=budget_s,
        out=None if out is None else str(out),
        overwrite=overwrite,
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        ray_address=ray_address,
        progress=progress,
    )


def _options(config, options: dict) -> dict:
    """A job's options from its typed config or from keywords (not both), as plain values that its
    parse function validates again, cross-field checks included.

    Raises:
        TypeError: when both are given.
    """
    if config is not None and options:
        raise TypeError(f"give a config or keyword options, not both (got a config and {sorted(options)})")
    return config.model_dump() if config is not None else options
