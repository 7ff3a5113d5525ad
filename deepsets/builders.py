"""Builders: plain values in, an assembled model out. Modules never see config objects.

    from deepsets.builders import build_model
    model = build_model(spec.model_inputs(), dim=128, fusion="transformer", task="binary")
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from deepsets.encoders import (
    CategoricalEncoder,
    DenseEncoder,
    DenseSequenceEncoder,
    IdSequenceEncoder,
    IdSetEncoder,
    NumericEncoder,
)
from deepsets.fusion import build_fusion
from deepsets.mmt import MMTModel
from deepsets.modality import ModalityInfo
from deepsets.model import SetFusionModel
from deepsets.ranking import InBatchSoftmax
from deepsets.summarize import Summarizer
from deepsets.tasks import TaskHead
from deepsets.two_tower import Tower, TwoTowerModel

FUSIONS = ("deepset", "attention", "transformer", "concat", "tmm_deepset", "mmt")
DEFAULT_MAX_LEN = 512  # position embeddings for sequences whose schema sets no max_len


def build_encoder(info: ModalityInfo, dim: int, hidden: int) -> nn.Module:
    """The encoder for one modality kind, projecting to ``dim``."""
    max_len = info.max_len or DEFAULT_MAX_LEN
    if info.kind == "dense":
        return DenseEncoder(info.dim, dim, hidden=0)
    if info.kind == "dense_sequence":
        return DenseSequenceEncoder(info.dim, dim, max_len)
    if info.kind == "id_sequence":
        return IdSequenceEncoder(info.num_embeddings, dim, max_len)
    if info.kind == "id_set":
        return IdSetEncoder(info.num_embeddings, dim)
    if info.kind == "categorical":
        return CategoricalEncoder(info.num_embeddings, dim)
    return NumericEncoder(info.num_columns, dim, hidden)


def build_model(
    inputs: Sequence[ModalityInfo],
    *,
    dim: int = 128,
    layers: int = 1,
    heads: int = 4,
    ff_dim: Optional[int] = None,
    pooling: str = "mean",
    fusion: str = "transformer",
    fusion_layers: int = 2,
    fusion_pooling: str = "mean",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    task: str = "binary",
    num_outputs: int = 1,
    query_modalities: Sequence[str] = (),
    item_modalities: Sequence[str] = (),
    temperature: float = 0.07,
) -> nn.Module:
    """Assemble a model for the given modalities.

    Args:
        inputs: one :class:`ModalityInfo` per modality (``FeatureSpec.model_inputs()``).
        dim: shared width ``D`` of every modality vector.
        layers: transformer layers per variable-length modality (0 = pooling only); for
            ``fusion="mmt"`` the layers of the single transformer are ``fusion_layers``.
        heads: attention heads everywhere.
        ff_dim: feed-forward width (default ``4 * dim``).
        pooling: pooling of a modality's elements: mean, max or attention.
        fusion: deepset, attention, transformer, concat, tmm_deepset, or mmt (baseline).
        fusion_layers: transformer fusion / MMT layers.
        fusion_pooling: pooling of the deepset heads: sum, mean, max, min, median.
        dropout: dropout inside transformers and MLPs.
        modality_dropout: rate at which whole modalities are dropped in training.
        task: binary, multilabel, multiclass, regression, listwise, pairwise, or two_tower
            (a :class:`deepsets.two_tower.TwoTowerModel`: two models like the one described
            here, over ``query_modalities`` and ``item_modalities``, projecting to ``dim``).
        num_outputs: labels / classes / targets (unused by two_tower).
        query_modalities: two_tower only: the query tower's modalities.
        item_modalities: two_tower only: the item tower's modalities.
        temperature: two_tower only: the starting softmax temperature (it is learned).

    Raises:
        ValueError: for an unknown fusion, duplicate names, no inputs, or two_tower modality
            lists that are empty, overlap, or name modalities not in ``inputs``.
    """
    if task == "two_tower":
        return _two_tower(inputs, query_modalities, item_modalities, temperature, dim=dim, layers=layers, heads=heads, ff_dim=ff_dim,
                          pooling=pooling, fusion=fusion, fusion_layers=fusion_layers, fusion_pooling=fusion_pooling,
                          dropout=dropout, modality_dropout=modality_dropout)
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    names = [i.name for i in inputs]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need at least one modality and unique names, got {names}")
    ff_dim = ff_dim or 4 * dim
    encoders = nn.ModuleDict({i.name: build_encoder(i, dim, hidden=ff_dim) for i in inputs})
    if fusion == "mmt":
        head = TaskHead(dim, task, num_outputs)
        return MMTModel(names, encoders, dim, fusion_layers, heads, ff_dim, head, dropout, modality_dropout)
    summarizers = nn.ModuleDict(
        {i.name: Summarizer(dim, layers, heads, ff_dim, pooling, dropout) for i in inputs if i.kind in ("dense_sequence", "id_sequence", "id_set")}
    )
    fusion_module = build_fusion(
        fusion, sorted(names), dim, layers=fusion_layers, heads=heads, ff_dim=ff_dim, pooling=fusion_pooling,
        dropout=dropout, modality_dropout=modality_dropout,
    )
    return SetFusionModel(names, encoders, summarizers, fusion_module, TaskHead(fusion_module.out_dim, task, num_outputs))


def _two_tower(inputs: Sequence[ModalityInfo], query: Sequence[str], item: Sequence[str], temperature: float, **kwargs) -> TwoTowerModel:
    """Two towers over disjoint subsets of ``inputs``, each projecting to ``dim``."""
    known = {i.name for i in inputs}
    for side, names in (("query", query), ("item", item)):
        unknown = sorted(set(names) - known)
        if not names or unknown:
            raise ValueError(f"two_tower {side}_modalities must name some of {sorted(known)} (got {list(names)}; unknown {unknown})")
    shared = sorted(set(query) & set(item))
    if shared:
        raise ValueError(f"two_tower query and item modalities overlap: {shared}")

    def tower(names: Sequence[str]) -> Tower:
        chosen = [i for i in inputs if i.name in set(names)]
        return Tower(build_model(chosen, task="regression", num_outputs=kwargs["dim"], **kwargs))  # head = projection to (B, dim)

    return TwoTowerModel(tower(query), tower(item), InBatchSoftmax(temperature))
