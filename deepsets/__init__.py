"""deepsets: set fusion for entities with many kinds of features, any of which can be missing.

The Python API, one function per job of the ``deepsets`` command line, each taking the typed
config the command builds and returning the summary its ``--json`` prints::

    import deepsets

    spec = deepsets.fit(schema="data/schema.toml", inputs=["data/train"], out="spec.json")
    trained = deepsets.train(deepsets.load_run_config("run.toml"))
    embedded = deepsets.embed(model=trained["model_uri"], inputs=["data/"], output="emb/")

| name                                        | what                                                |
|---------------------------------------------|-----------------------------------------------------|
| ``init``                                    | schema.toml and run.toml for a new table             |
| ``fit``                                     | fit a feature spec on training Parquet               |
| ``train``                                   | train on Ray Train, log the model to MLflow          |
| ``embed``, ``retrieve``                     | embed rows as a Ray Data job; top-k items per query  |
| ``ablate``                                  | per-modality contributions of a trained model        |
| ``tune``                                    | search a run config's settings on Ray Tune           |
| ``RunConfig``, ``load_run_config``, ``parse_run_config`` | the run config: typed, from TOML, from a dict |
| ``InitConfig``, ``FitConfig``, ``TuneConfig``           | the options of init, fit, tune                |
| ``EmbedConfig``, ``AblateConfig``, ``RetrieveConfig``    | the options of embed, ablate, retrieve        |
| ``FeatureSchema``, ``load_schema``, ``FeatureSpec``      | the feature schema and the fitted spec        |
| ``ModelArgs``                               | a model's settings (``deepsets.builders.build_model``) |

Importing ``deepsets`` loads none of them: each name is imported on first use, so the model
library (``deepsets.builders``, ``deepsets.fusion``, ...) stays free of Ray, MLflow and polars,
which only the jobs (``deepsets.pipelines``) need.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    **dict.fromkeys(
        ("init", "fit", "train", "embed", "ablate", "retrieve", "tune")
        + ("InitConfig", "FitConfig", "TuneConfig", "EmbedConfig", "AblateConfig", "RetrieveConfig"),
        "deepsets.pipelines.api",
    ),
    **dict.fromkeys(("RunConfig", "load_run_config", "parse_run_config"), "deepsets.pipelines.config"),
    **dict.fromkeys(("FeatureSchema", "load_schema"), "deepsets.features.schema"),
    "FeatureSpec": "deepsets.features.spec",
    "ModelArgs": "deepsets.model_args",
}
"""Public name -> the module it is loaded from on first use (the one place the model package
names the layers above it, as text, so that nothing is imported with ``deepsets``)."""

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562) and keep it, so later lookups are plain.

    Raises:
        AttributeError: for a name that is not public.
    """
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'deepsets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_PUBLIC))
