"""What ``deepsets retrieve`` is asked to do: :class:`RetrieveConfig`, validated before anything runs.

Each field is also the command's flag (``target_recall`` is ``--target-recall``, its description
the help); this module imports neither FAISS nor pyarrow, so the command line is built from it cheaply.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from deepsets.pipelines.options import parse_options


class RetrieveConfig(BaseModel):
    """What ``deepsets retrieve`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    items: str = Field(min_length=1, description="the --output folder of `deepsets embed --tower item`")
    queries: str = Field(min_length=1, description="the --output folder of `deepsets embed --tower query`")
    k: int = Field(100, ge=1, description="items per query")
    out: str = Field(min_length=1, description="output folder: part-*.parquet of (query id, rank, item id, score)")
    exclude: Optional[str] = Field(
        None, description="Parquet of (query id, item id) pairs never to return, e.g. each user's history"
    )
    exclude_columns: str = Field(
        "", description="QUERY_COLUMN,ITEM_COLUMN of --exclude (default: the embeddings' id column names)"
    )
    index: Literal["flat", "ivf", "hnsw"] = Field(
        "flat", description="flat: exact (default); ivf, hnsw: approximate, recall reported"
    )
    nprobe: Optional[int] = Field(
        None, ge=1, description="ivf: lists searched per query (default: tuned to --target-recall)"
    )
    target_recall: float = Field(
        0.95,
        gt=0,
        le=1,
        description="ivf, hnsw: widen the search until recall@k against exact search on the first "
        "--recall-queries queries reaches this",
    )
    batch_size: int = Field(4096, ge=1, description="queries per search")
    recall_queries: int = Field(
        1000, ge=1, description="ivf, hnsw: queries whose recall against exact search is measured"
    )
    overwrite: bool = Field(False, description="replace an earlier retrieve job's output in --out")


def parse_retrieve_config(**values) -> RetrieveConfig:
    """:class:`RetrieveConfig` from keyword values.

    Raises:
        ConfigError: every bad option.
    """
    return parse_options(RetrieveConfig, "retrieve", values)
