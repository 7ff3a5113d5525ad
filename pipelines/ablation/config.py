"""What ``deepsets ablate`` is asked to do: :class:`AblateConfig`, validated before anything runs.

Each field is also the command's flag (``per_row`` is ``--per-row``, its description the help);
this module imports no torch, so the command line is built from it cheaply.
"""

from __future__ import annotations

import typing
from typing import Annotated, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepsets.pipelines.options import Flag, ModelUri, parse_options

MethodName = Literal["loo", "only", "permute", "shapley", "maxpool"]
"""An ablation method (each is implemented in ``deepsets.pipelines.ablation.methods.METHODS``)."""
METHOD_NAMES = typing.get_args(MethodName)

RANKING = "ranking models (listwise, pairwise, two_tower)"
"""The ``--help`` heading of the options only ranking models read."""


class AblateConfig(BaseModel):
    """What ``deepsets ablate`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelUri
    inputs: Annotated[List[str], Flag("--input")] = Field(
        min_length=1, description="labelled Parquet files, directories or globs (e.g. the validation split)"
    )
    methods: Annotated[List[str], Flag(separator=",")] = Field(
        default_factory=lambda: ["loo", "only", "permute", "shapley"],
        description=f"comma-separated: {', '.join(METHOD_NAMES)} (default: the first four)",
    )
    label: Optional[str] = Field(
        None, description="label column (default: the one the model was trained on, when the model says)"
    )
    per_row: bool = Field(
        False,
        description="also write per-row Shapley contributions to the score "
        "(binary, regression, listwise, pairwise; two_tower: to each query's NDCG@k)",
    )
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples for the 95% intervals, 0 for none")
    seed: int = Field(0, description="seeds the bootstrap resamples, permutations and sampled Shapley orders")
    batch_size: int = Field(1024, ge=1, description="rows per forward pass")
    out: str = Field("ablation", description="output directory")
    overwrite: bool = Field(False, description="replace an earlier ablation's files in --out")
    log_mlflow: Annotated[bool, Flag("--no-mlflow")] = Field(
        True, description="log the results to the model's MLflow run"
    )
    retrain: bool = Field(
        False,
        description="also train a new model without each modality "
        "(parallel Ray tasks, MLflow runs nested under one parent)",
    )
    truth: Optional[str] = Field(
        None, description="truth.json of the reference workload: report Spearman vs the planted contributions"
    )
    shapley_permutations: Annotated[Optional[int], Flag(metavar="P")] = Field(
        None,
        ge=2,
        description="estimate Shapley values from P random modality orders, with standard errors "
        "(default: exact up to 12 modalities, 256 orders beyond)",
    )
    k: Annotated[Optional[int], Flag(group=RANKING)] = Field(
        None, ge=1, description="cutoff of NDCG@k and Recall@k (default: the model's task.k, else 10)"
    )
    group: Annotated[Optional[str], Flag(group=RANKING)] = Field(
        None, description="listwise / pairwise: query group column (default: the model's)"
    )
    items: Annotated[Optional[List[str]], Flag(metavar="PATH", group=RANKING, repeat=True)] = Field(
        None,
        min_length=1,
        description="two_tower: the item corpus each query's held-out item is ranked in "
        "(repeatable; default: the inputs' distinct items)",
    )
    item_column: Annotated[Optional[str], Flag(group=RANKING)] = Field(
        None, description="two_tower: item id column (default: the model's)"
    )
    exclude: Annotated[Optional[str], Flag(metavar="PATH", group=RANKING)] = Field(
        None,
        description="two_tower: Parquet of (query id, item id) pairs left out of each query's ranking (seen items)",
    )
    exclude_columns: Annotated[str, Flag(metavar="Q,I", group=RANKING)] = Field(
        "", description="the two columns of --exclude (default: the inputs' id column and the item column)"
    )

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: List[str]) -> List[str]:
        unknown = [m for m in methods if m not in METHOD_NAMES]
        if unknown or not methods:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHOD_NAMES)}")
        return list(dict.fromkeys(methods))


def parse_ablate_config(**values) -> AblateConfig:
    """:class:`AblateConfig` from keyword values.

    Raises:
        ConfigError: naming every bad option.
    """
    return parse_options(AblateConfig, "ablate", values)
