"""What ``deepsets embed`` is asked to do: :class:`EmbedConfig`, validated before anything runs.

Each field is also the command's flag (``batch_size`` is ``--batch-size``, its description the
help); this module imports neither Ray nor pyarrow, so the command line is built from it cheaply.
"""

from __future__ import annotations

from typing import Annotated, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.options import Flag, ModelUri, RayAddress, parse_options


class EmbedConfig(BaseModel):
    """What ``deepsets embed`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelUri
    inputs: Annotated[List[str], Flag("--input")] = Field(
        min_length=1, description="Parquet files, directories or globs"
    )
    output: str = Field(min_length=1, description="output directory (embeddings/, rejects/, _manifest.json)")
    batch_size: int = Field(1024, ge=1, description="rows per forward pass")
    workers: int = Field(1, ge=1, description="actors, each with its own copy of the model")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs (and torch threads) per worker")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker; > 0 runs the model on CUDA")
    with_modalities: bool = Field(False, description="also write vector_<modality> and present_<modality> columns")
    tower: Optional[Literal["query", "item"]] = Field(
        None, description="two-tower models: embed the query or the item side (reads only its modalities)"
    )
    fragment_rows: int = Field(50_000, ge=1, description="rows per fragment, the unit of work and of output files")
    resume: bool = Field(False, description="complete an interrupted job in --output (exactly once)")
    overwrite: bool = Field(False, description="replace a job already in --output")
    ray_address: RayAddress = None


def parse_embed_config(**values) -> EmbedConfig:
    """:class:`EmbedConfig` from keyword values.

    Raises:
        ConfigError: every bad option.
    """
    cfg = parse_options(EmbedConfig, "embed", values)
    if cfg.resume and cfg.overwrite:
        raise ConfigError(
            "embed options", ["--resume and --overwrite exclude each other (continue the job, or start it again)"]
        )
    return cfg
