"""Builders: plain values in, an assembled model out. Modules never see config objects.

    from deepsets.builders import build_model
    model = build_model(spec.model_inputs(), dim=128, fusion="transformer", task="binary")
    model = build_model(spec.model_inputs(), ModelArgs(dim=128))      # the same, typed

Which encoder a modality gets is the encoder registry's business (``deepsets.encoders``);
whether it gets a summarizer is its kind's (``deepsets.kinds``).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from torch import nn

from deepsets.encoders import build_encoder
from deepsets.fusion import FusionSettings, SetFusion, fusion_builder
from deepsets.fusion_heads import fusion_traits, set_fusion_heads
from deepsets.kinds import kind_traits
from deepsets.mmt import MMTModel
from deepsets.modality import ModalityInfo
from deepsets.model import SetFusionModel
from deepsets.model_args import ModelArgs, fusion_pooling_problem
from deepsets.ranking import InBatchSoftmax
from deepsets.summarize import Summarizer
from deepsets.tasks import TaskHead
from deepsets.two_tower import Tower, TwoTowerModel

MAX_TABLE_BYTES = 8 << 30
"""The largest embedding table built (its weights; training with Adam holds about 4 times as
much: the gradient and two moments)."""


def check_table_sizes(inputs: Sequence[ModalityInfo], dim: int) -> None:
    """Refuse an embedding table that would not fit, before anything allocates it.

    Raises:
        ValueError: naming the modality, its rows and the memory it would take.
    """
    for info in inputs:
        if info.num_embeddings and info.num_embeddings * dim * 4 > MAX_TABLE_BYTES:
            gib = info.num_embeddings * dim * 4 / (1 << 30)
            raise ValueError(
                f"modality {info.name!r}: an embedding table of {info.num_embeddings:,} rows x {dim} is {gib:.1f} GiB of "
                f"weights (about {4 * gib:.0f} GiB to train with Adam; the limit is {MAX_TABLE_BYTES >> 30} GiB): "
                "cap it in the schema with max_size, min_count or a smaller hash_buckets"
            )


def build_model(inputs: Sequence[ModalityInfo], args: Optional[ModelArgs] = None, **kwargs) -> nn.Module:
    """Assemble a model for the given modalities.

    Args:
        inputs: one :class:`ModalityInfo` per modality (``FeatureSpec.model_inputs()``).
        args: every setting (:class:`deepsets.model_args.ModelArgs`, whose docstring lists
            them); or leave it out and pass the same fields as keywords
            (``build_model(inputs, dim=64, fusion="deepset")``). A ``two_tower`` task gives a
            :class:`deepsets.two_tower.TwoTowerModel`: two models like the one described here,
            over ``query_modalities`` and ``item_modalities``, projecting to ``dim``.

    Raises:
        ValueError: for settings :class:`ModelArgs` refuses, duplicate names, no inputs, an
            unknown kind, or two_tower modality lists that name modalities not in ``inputs``.
    """
    if args is not None and kwargs:
        raise ValueError(f"give either args or keyword settings, not both (got args and {sorted(kwargs)})")
    args = args if args is not None else ModelArgs(**kwargs)
    check_table_sizes(inputs, args.dim)
    if args.task == "two_tower":
        return _two_tower(inputs, args)
    names = [i.name for i in inputs]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need at least one modality and unique names, got {names}")
    ff_dim = args.feed_forward_dim
    encoders = nn.ModuleDict({i.name: build_encoder(i, args.dim, ff_dim) for i in inputs})
    if not fusion_traits(args.fusion).set_head:  # the MMT baseline: one transformer over every token
        head = TaskHead(args.dim, args.task, args.num_outputs)
        return MMTModel(
            names, encoders, args.dim, args.fusion_layers, args.heads, ff_dim, head, args.dropout, args.modality_dropout
        )
    summarizers = nn.ModuleDict(
        {
            i.name: Summarizer(args.dim, args.layers, args.heads, ff_dim, args.pooling, args.dropout)
            for i in inputs
            if kind_traits(i.kind).summarized
        }
    )
    fusion = build_fusion(
        args.fusion,
        sorted(names),
        args.dim,
        layers=args.fusion_layers,
        heads=args.heads,
        ff_dim=ff_dim,
        pooling=args.fusion_pooling,
        dropout=args.dropout,
        modality_dropout=args.modality_dropout,
    )
    return SetFusionModel(names, encoders, summarizers, fusion, TaskHead(fusion.out_dim, args.task, args.num_outputs))


def _two_tower(inputs: Sequence[ModalityInfo], args: ModelArgs) -> TwoTowerModel:
    """Two towers over disjoint subsets of ``inputs``, each projecting to ``args.dim`` (``args``
    has already checked that the lists are given, disjoint, and that shortcuts pair them)."""
    query, item = args.query_modalities, args.item_modalities
    known = {i.name for i in inputs}
    for side, names in (("query", query), ("item", item)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(
                f"two_tower {side}_modalities must name some of {sorted(known)} (got {list(names)}; unknown {unknown})"
            )

    def tower(names: Sequence[str], shortcuts: Sequence[str]) -> Tower:
        chosen = [i for i in inputs if i.name in set(names)]
        side = args.replace(
            task="regression", num_outputs=args.dim, query_modalities=(), item_modalities=(), shortcuts=()
        )
        return Tower(build_model(chosen, side), shortcuts, args.dim)  # its task head: the projection to (B, dim)

    sides = list(zip(*args.shortcuts)) or [(), ()]
    return TwoTowerModel(tower(query, sides[0]), tower(item, sides[1]), InBatchSoftmax(args.temperature))


def build_fusion(
    kind: str,
    names: Sequence[str],
    dim: int,
    *,
    layers: int = 2,
    heads: int = 4,
    ff_dim: Optional[int] = None,
    pooling: str = "mean",
    hidden_dims: Optional[Sequence[int]] = None,
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
) -> SetFusion:
    """Build a SetFusion around the head ``kind``; every kind outputs width ``dim``.

    Args:
        kind: one of ``deepsets.fusion_heads.set_fusion_heads()``: "deepset", "attention",
            "transformer", "concat", "tmm_deepset" or a registered head.
        names: modality names, unique and sorted (the slot order of the vectors).
        dim: width of the modality vectors and of the fused embedding.
        layers: encoder layers ("transformer" only).
        heads: attention heads ("transformer" only); must divide dim.
        ff_dim: feed-forward width ("transformer" only); None means 4 * dim.
        pooling: one of the head's ``FusionTraits.poolings`` ("deepset": sum/mean/max/min/median;
            "tmm_deepset": sum/mean/max); ignored by heads without poolings.
        hidden_dims: hidden widths of the MLP after pooling (all kinds but "transformer");
            None means (dim,).
        dropout: dropout in that MLP, or inside the transformer layers.
        modality_dropout: probability of dropping a present modality during training.

    Raises:
        ValueError: listing every problem found: unknown kind (with the choices), bad names,
            a pooling the kind does not support, a non-positive dim.
    """
    names = list(names)
    problems: List[str] = []
    heads_known = set_fusion_heads()
    if kind not in heads_known:
        problems.append(f"unknown fusion kind {kind!r}; choose one of {', '.join(heads_known)}")
    if not names or names != sorted(set(names)):
        problems.append(f"names must be non-empty, unique and sorted, got {names}")
    if dim <= 0:
        problems.append(f"dim must be positive, got {dim}")
    pooling_problem = fusion_pooling_problem(kind, pooling) if kind in heads_known else None
    if pooling_problem:
        problems.append(pooling_problem)
    if problems:
        raise ValueError("; ".join(problems))
    settings = FusionSettings(
        tuple(names),
        dim,
        layers=layers,
        heads=heads,
        ff_dim=ff_dim,
        pooling=pooling,
        hidden=None if hidden_dims is None else tuple(hidden_dims),
        dropout=dropout,
    )
    head = fusion_builder(kind)(settings)
    return SetFusion(head, len(names), dim, modality_dropout=modality_dropout)
