"""Every task kind's loss and validation metrics through the one training-loop path, without Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepsets.builders import build_model
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.training.loop import evaluate, train_step
from deepsets.pipelines.training.objectives import ItemLogQ, Objective
from deepsets.ranking import listwise_softmax_loss, pad_groups, pairwise_logistic_loss
from tests.deepsets.random_batches import INFOS, random_batch

QUERY, ITEM = ["history", "country", "profile"], ["image", "frames", "tags"]


def _ranked_batch(b: int, seed: int):
    batch = random_batch(b, seed=seed)
    batch.labels["query_id"] = torch.arange(b) // 5  # groups of 5 rows
    batch.labels["item_id"] = torch.arange(b) % 7  # repeated items
    return batch


@pytest.mark.parametrize("kind", ["listwise", "pairwise"])
def test_grouped_loss_is_the_group_loss_and_training_moves_the_model(kind):
    torch.manual_seed(0)
    model = build_model(INFOS, dim=16, heads=2, fusion="deepset", task=kind)
    objective = Objective(kind, ("y",), group_column="query_id", k=3)
    batch = _ranked_batch(40, seed=1)
    scores = model(batch).logits.reshape(-1)
    expected_fn = listwise_softmax_loss if kind == "listwise" else pairwise_logistic_loss
    expected = expected_fn(*pad_groups(scores, batch.labels["y"], batch.labels["query_id"]))
    assert float(objective.loss(model, batch).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, "adamw", 1e-2, 0.0)
    scheduler = make_scheduler(optimizer, "constant", 10, 0)
    train_step(model, batch, objective, optimizer, scheduler, torch.device("cpu"))
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    metrics = evaluate(model, [_ranked_batch(40, seed=2), _ranked_batch(40, seed=3)], objective, torch.device("cpu"))
    assert set(metrics) == {"loss", "ndcg_at_3", "mrr", "recall_at_3", "groups"}
    assert 0.0 <= metrics["ndcg_at_3"] <= 1.0 and 0.0 < metrics["mrr"] <= 1.0


def test_two_tower_loss_uses_log_q_and_validation_ranks_distinct_items():
    torch.manual_seed(0)
    model = build_model(
        INFOS, dim=16, heads=2, fusion="deepset", task="two_tower", query_modalities=QUERY, item_modalities=ITEM
    )
    batch = _ranked_batch(28, seed=4)
    counts = ItemLogQ(np.arange(7), np.array([1, 1, 1, 1, 1, 1, 94]))
    plain = Objective("two_tower", (), item_column="item_id")
    corrected = Objective("two_tower", (), item_column="item_id", item_log_q=counts)
    with torch.no_grad():
        out = model(batch)
    assert out.query.shape == out.item.shape == (28, 16)
    assert torch.allclose(out.query.norm(dim=1), torch.ones(28), atol=1e-5)
    ids = batch.labels["item_id"]
    torch.set_grad_enabled(False)
    assert float(plain.loss(model, batch)) == pytest.approx(float(model.loss(out, ids)), rel=1e-6)
    assert float(corrected.loss(model, batch)) == pytest.approx(float(model.loss(out, ids, counts(ids))), rel=1e-6)
    assert float(corrected.loss(model, batch)) != pytest.approx(float(plain.loss(model, batch)), rel=1e-3)
    torch.set_grad_enabled(True)
    metrics = evaluate(model, [batch], plain, torch.device("cpu"))
    assert metrics["corpus_items"] == 7.0
    assert set(metrics) == {"loss", "ndcg_at_10", "recall_at_10", "mrr", "corpus_items"}
    assert metrics["recall_at_10"] == 1.0  # 7 candidates: every item is in the top 10


def test_item_log_q_lookup():
    log_q = ItemLogQ(np.array([30, 10, 20]), np.array([2, 1, 1]))
    got = log_q(torch.tensor([10, 30, 99]))
    assert got.tolist() == pytest.approx([math.log(0.25), math.log(0.5), math.log(0.25)])  # unseen: one row's share
