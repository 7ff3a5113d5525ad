"""Ranking ablation against planted truth: the workload's listwise NDCG and two-tower retrieval
recover the modalities' planted contributions (models built by hand, no training)."""

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import torch

from deepsets import ablation as ab
from deepsets.pipelines.ablation.methods import METHODS, CachedRows
from deepsets.pipelines.ablation.ranking import GroupedScorer, RetrievalScorer


class PlantedModel:
    """Scores rows by the planted signals: sum over present modalities of weight x signal."""

    def __init__(self, weights):
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def fuse(self, vectors, present):
        return SimpleNamespace(
            logits=(torch.where(present, vectors[..., 0].double(), 0.0) @ self.weights).unsqueeze(1)
        )  # (B, 1)


def test_ndcg_shapley_and_leave_one_out_rank_the_planted_contributions_of_the_workload(tmp_path):
    """Ranking the workload's query groups by the model that generated the clicks, the NDCG
    ablation recovers truth.json's ranking of the modalities."""
    from deepsets.features import synth, synth_signals

    summary = synth.generate(20_000, tmp_path, seed=5, progress=False)
    table = pq.read_table([str(tmp_path / f) for f in summary["files"]])
    truth = json.loads((tmp_path / "truth.json").read_text())["contribution"]
    names = list(synth_signals.MODALITIES)
    signals = synth_signals.signals(table, synth_signals.make_tables(5))
    vectors = torch.tensor(np.stack([signals[n] for n in names], axis=1)).unsqueeze(-1)  # (N, M, 1)
    present = torch.tensor(np.stack([signals[n] != 0 for n in names], axis=1))  # (N, M)
    rows = CachedRows(
        vectors, present, torch.tensor(table.column("clicked").to_numpy()).double(), np.arange(table.num_rows), names
    )
    model = PlantedModel([synth_signals.WEIGHTS[n] for n in names])
    scorer = GroupedScorer(
        model, rows, "listwise", 50, 0, True, torch.tensor(table.column("query_id").to_numpy()), k=10
    )
    planted = [truth[n] for n in names]
    assert scorer.full > scorer.empty + 0.1 and scorer.units > 500
    for method in ("shapley", "loo"):
        values = [r["delta"] for r in METHODS[method](scorer, {})]
        assert ab.spearman(values, planted) >= 0.9, (method, values)


class PlantedTower:
    """A tower that adds up its present modality vectors, each scaled by a planted weight."""

    def __init__(self, weights):
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def fuse(self, vectors, present):
        return SimpleNamespace(logits=(vectors * (present * self.weights).unsqueeze(-1)).sum(dim=1))  # (B, D)


def test_two_tower_ablation_ranks_planted_item_modalities_by_their_weight():
    """Queries point at their item's weighted modality vectors plus noise: the larger a
    modality's weight x presence, the more retrieval loses without it."""
    generator = torch.Generator().manual_seed(0)
    items, queries, dim = 400, 800, 32
    weights, presence = [1.6, 1.1, 0.8, 0.55, 0.35], torch.tensor([0.8, 0.9, 0.7, 0.85, 0.75])
    item_vectors = torch.nn.functional.normalize(torch.randn(items, 5, dim, generator=generator), dim=-1)  # (C, 5, D)
    item_present = torch.rand(items, 5, generator=generator) < presence  # (C, 5)
    target = torch.randint(items, (queries,), generator=generator)  # (Q,)
    item_tower = PlantedTower(weights)
    clean = item_tower.fuse(item_vectors, item_present).logits[target]  # (Q, D)
    query_vectors = (clean + 0.8 * torch.randn(queries, dim, generator=generator)).unsqueeze(1)  # (Q, 1, D)
    model = SimpleNamespace(query=PlantedTower([1.0]), item=item_tower)
    names = [f"m{i}" for i in range(5)]
    query_rows = CachedRows(
        query_vectors, torch.ones(queries, 1, dtype=torch.bool), target, np.arange(queries), ["query"]
    )
    corpus = CachedRows(item_vectors, item_present, torch.zeros(items), np.arange(items), names)
    scorer = RetrievalScorer(model, query_rows, corpus, 40, 0, True, k=10)
    truth = [w * float(p) for w, p in zip(weights, presence)]
    assert scorer.full > 0.3, scorer.full
    for method in ("shapley", "loo", "permute"):
        values = {r["modality"]: r["delta"] for r in METHODS[method](scorer, {})}
        assert ab.spearman([values[n] for n in names], truth) >= 0.9, (method, values)
