"""What ``deepsets ablate`` is asked to do: :class:`AblateConfig`, validated before anything runs."""

from __future__ import annotations

from typing import List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepsets.pipelines.ablation.methods import METHODS
from deepsets.pipelines.options import parse_options


class AblateConfig(BaseModel):
    """What ``deepsets ablate`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    inputs: List[str] = Field(min_length=1)
    out: str = "ablation"
    methods: List[str] = Field(default_factory=lambda: ["loo", "only", "permute", "shapley"])
    label: Optional[str] = None
    per_row: bool = False
    bootstrap: int = Field(200, ge=0, description="bootstrap samples for the intervals (0: none)")
    seed: int = 0  # seeds the random parts: bootstrap resamples, permutations, sampled Shapley orders
    batch_size: int = Field(1024, ge=1)
    log_mlflow: bool = True  # log the results to the model's MLflow run (--no-mlflow: false)
    truth: Optional[str] = Field(None, description="a truth.json with planted contributions (the reference workload)")
    retrain: bool = Field(False, description="also retrain without each modality (Ray tasks, nested MLflow runs)")
    shapley_permutations: Optional[int] = Field(
        None,
        ge=2,
        description="estimate Shapley values from this many random modality orders "
        "(default: exact up to 12 modalities, 256 orders beyond)",
    )
    k: Optional[int] = Field(
        None,
        ge=1,
        description="ranking models: the cutoff of NDCG@k and Recall@k (default: the model's task.k, else 10)",
    )
    group: Optional[str] = Field(None, description="listwise / pairwise: the query group column (default: the model's)")
    item_column: Optional[str] = Field(None, description="two_tower: the item id column (default: the model's)")
    items: Optional[List[str]] = Field(
        None, min_length=1, description="two_tower: the item corpus (default: the inputs' distinct items)"
    )
    exclude: Optional[str] = Field(
        None, description="two_tower: Parquet of (query id, item id) pairs left out of each query's ranking"
    )
    exclude_columns: str = Field(
        "", description="QUERY_COLUMN,ITEM_COLUMN in --exclude (default: the inputs' id column and the item column)"
    )
    overwrite: bool = Field(False, description="replace an earlier ablation's files in --out")

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: List[str]) -> List[str]:
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        return list(dict.fromkeys(methods))


def parse_ablate_config(**values) -> AblateConfig:
    """:class:`AblateConfig` from keyword values.

    Raises:
        ConfigError: naming every bad option.
    """
    return parse_options(AblateConfig, "ablate", values)
