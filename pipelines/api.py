"""The Python API: each job of the ``deepsets`` command line as one function, taking the same typed
config the command builds and returning the same summary ``--json`` prints.

    import deepsets

    spec = deepsets.fit(schema="data/schema.toml", inputs=["data/train"], out="spec.json")
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

from typing import Optional

from pydantic import BaseModel

from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.ablation.config import AblateConfig, parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.commands.training import with_env_tracking_uri
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.embedding.job import EmbedConfig, parse_embed_config, run_embed
from deepsets.pipelines.fitting import FitConfig, parse_fit_config, run_fit
from deepsets.pipelines.init.config import InitConfig, parse_init_config
from deepsets.pipelines.init.job import run_init
from deepsets.pipelines.retrieval.job import RetrieveConfig, parse_retrieve_config, run_retrieve
from deepsets.pipelines.training.run import run_training
from deepsets.pipelines.tuning.config import TuneConfig, parse_tune_config, run_tune_config


def init(config: Optional[InitConfig] = None, /, *, progress: bool = False, **options) -> dict:
    """Write ``schema.toml`` and ``run.toml`` for a new table, each choice explained (``deepsets init``).

    Args:
        config: an :class:`InitConfig`; or leave it out and pass its fields as keywords
            (``init(inputs=["shop/train"], label="bought", valid=["shop/valid"], out="shop_run/")``).
        progress: progress bars on large inputs.

    Returns:
        The summary ``deepsets init --json`` prints (``schema``, ``run_config``, ``rows``,
        ``task``, ``columns``), and ``choices``: each column's choice as an object.

    Raises:
        ConfigError: for bad options.
        DataError: for inputs that cannot be read or a column that no kind can take as it is.
        JobError: when a file is in the way (without ``overwrite``) or no column is left to learn from.
    """
    return run_init(parse_init_config(**_options(config, options, InitConfig)), progress=progress)


def fit(config: Optional[FitConfig] = None, /, *, progress: bool = False, **options) -> FeatureSpec:
    """Fit a feature spec on training Parquet (``deepsets fit``).

    Args:
        config: a :class:`FitConfig`; or leave it out and pass its fields as keywords
            (``fit(schema="data/schema.toml", inputs="data/train", out="spec.json")``):
            ``schema`` the schema TOML file or a :class:`FeatureSchema` built in code;
            ``inputs`` training Parquet files, directories or globs; ``out`` where to save the
            spec JSON (local or ``s3://``; left out, the spec is kept in memory only);
            ``overwrite`` replace an existing ``out`` (refused otherwise); ``validate=False``
            skips reading every row back through the fitted spec.
        progress: show a progress bar for that pass.

    Returns:
        The fitted :class:`FeatureSpec` (``spec.stats()`` holds what ``deepsets fit`` prints).

    Raises:
        ConfigError: for bad options.
        SchemaError: for a bad schema file.
        DataError: for missing files or columns, wrong types or bad values (file, column, rows).
        JobError: when ``out`` exists and ``overwrite`` is False.
    """
    return run_fit(parse_fit_config(**_options(config, options, FitConfig)), progress=progress)


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
    return run_embed(parse_embed_config(**_options(config, options, EmbedConfig)), progress=progress)


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
    return run_ablate(parse_ablate_config(**_options(config, options, AblateConfig)), progress=progress)


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
    return run_retrieve(parse_retrieve_config(**_options(config, options, RetrieveConfig)), progress=progress)


def tune(config: Optional[TuneConfig] = None, /, *, progress: bool = True, **options) -> dict:
    """Search a run config's settings on Ray Tune (``deepsets tune``); writes ``best.toml``.

    Args:
        config: a :class:`TuneConfig`; or leave it out and pass its fields as keywords
            (``tune(config="run.toml", space="space.toml", budget="20m")``): ``config`` the run
            config TOML every trial starts from; ``budget`` seconds, or text as ``--budget``
            takes it; ``overrides`` the ``section.field=value`` texts set for every trial. An
            empty ``tracking.mlflow_uri`` is taken from ``MLFLOW_TRACKING_URI`` when that is set.
        progress: print each trial as it ends.

    Returns:
        The summary ``deepsets tune --json`` prints: the trials, the best one, ``best.toml``.

    Raises:
        ConfigError: for bad options (``trials`` below 1, a budget that cannot be read), a bad
            run config or space.
        JobError: ``out`` holds an earlier search and ``overwrite`` is False.
    """
    return run_tune_config(parse_tune_config(**_options(config, options, TuneConfig)), progress=progress)


def _options(config: Optional[BaseModel], options: dict, cls: type[BaseModel]) -> dict:
    """A job's options from its typed config or from keywords (not both), as values that its
    parse function validates again, cross-field checks included (a value that is a model, such
    as ``fit``'s FeatureSchema, is passed on as it is).

    Raises:
        TypeError: when both are given, or the config is not a ``cls``.
    """
    if config is None:
        return options
    if not isinstance(config, cls):
        raise TypeError(
            f"the positional argument must be a {cls.__name__} (found {type(config).__name__}); "
            f"or pass its fields as keywords"
        )
    if options:
        raise TypeError(f"give a config or keyword options, not both (got a config and {sorted(options)})")
    return {name: getattr(config, name) for name in type(config).model_fields}
