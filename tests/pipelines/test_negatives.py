"""Two-tower negatives beyond the batch: the softmax with extra items by hand, the mixed logQ,
the catalogue's full softmax, and in-process training with each kind of negatives."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from deepsets.batch import FeatureBatch
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.training.negatives import ItemCatalogue, Negatives
from deepsets.ranking import InBatchSoftmax
from tests.pipelines.test_train_ranking import CLUSTERS, ITEMS_PER_CLUSTER, TWO_TOWER_SCHEMA, write_two_tower_data


def test_extra_negatives_join_the_softmax_and_batch_items_are_not_counted_twice():
    torch.manual_seed(0)
    q, v, extra = torch.randn(3, 4), torch.randn(3, 4), torch.randn(4, 4)
    ids, extra_ids = torch.tensor([10, 11, 12]), torch.tensor([11, 20, 21, 10])  # 11 and 10 are in the batch already
    log_q, extra_log_q = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-0.5, -0.6, -0.7, -0.8])
    softmax = InBatchSoftmax(0.5)
    got = softmax(q, v, item_log_q=log_q, item_ids=ids, extra_items=extra, extra_ids=extra_ids, extra_log_q=extra_log_q)
    qn, vn, en = F.normalize(q, dim=1), F.normalize(v, dim=1), F.normalize(extra, dim=1)
    expected = 0.0
    for b in range(3):
        logits = [float(qn[b] @ vn[j]) / 0.5 - float(log_q[j]) for j in range(3)]
        logits += [float(qn[b] @ en[s]) / 0.5 - float(extra_log_q[s]) for s in (1, 2)]  # items 20 and 21 only
        expected += -(logits[b] - math.log(sum(math.exp(x) for x in logits)))
    assert float(got.detach()) == pytest.approx(expected / 3, rel=1e-5)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("negatives")
    write_two_tower_data(base / "train", 3000, seed=1)
    write_two_tower_data(base / "valid", 600, seed=2)
    rows = pq.read_table(base / "train" / "part-0.parquet")
    first = np.unique(rows["item_id"].to_numpy(), return_index=True)[1]
    catalogue = rows.take(pa.array(first))  # one row per item (with that row's query columns too)
    catalogue = catalogue.set_column(catalogue.schema.get_field_index("event_id"), "event_id", catalogue["item_id"])
    pq.write_table(catalogue, base / "items.parquet")
    spec = FeatureSpec.fit(parse_schema(__import__("tomllib").loads(TWO_TOWER_SCHEMA)), base / "train")
    return base, spec


def test_the_catalogue_is_every_item_once_and_its_draws_follow_the_seed(planted):
    base, spec = planted
    items = ItemCatalogue(spec.subset(["item", "item_vec"]), [str(base / "items.parquet")], "item_id")
    assert len(items) == CLUSTERS * ITEMS_PER_CLUSTER and sorted(items.ids.tolist()) == items.ids.tolist()
    a = Negatives("mixed", items, num_negatives=8, seed=3).draw()
    b = Negatives("mixed", items, num_negatives=8, seed=3).draw()
    assert torch.equal(a[1], b[1]) and a[0].num_rows == 8
    torch.testing.assert_close(
        a[0]["item_vec"].values, items.items.take(torch.searchsorted(items.ids, a[1]))["item_vec"].values
    )
    twice = pa.concat_tables([pq.read_table(base / "items.parquet")] * 2)
    pq.write_table(twice, base / "twice.parquet")
    with pytest.raises(Exception, match=r"item table lists 200 item id\(s\) more than once"):
        ItemCatalogue(spec.subset(["item", "item_vec"]), [str(base / "twice.parquet")], "item_id")


def test_mixed_negatives_are_corrected_by_their_expected_count():
    items = type("Items", (), {"__len__": lambda self: 200})()
    negatives = Negatives("mixed", items, num_negatives=50)
    batch_log_q = torch.log(torch.tensor([0.1, 0.001]))
    got, sampled = negatives.log_q(batch_log_q, batch_log_q, batch_size=20)
    expected = torch.log(20 * torch.tensor([0.1, 0.001]) + 50 / 200)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(sampled, expected)
    assert Negatives("catalogue", items).log_q(batch_log_q, None, 20) == (None, None)


def test_catalogue_negatives_are_a_full_softmax_over_the_item_table_plus_the_in_batch_softmax(planted):
    """With fresh catalogue embeddings (refresh every step, no dropout), the loss is the plain
    softmax of each query over every item of the table plus the in-batch softmax (whose
    gradient keeps the item tower's items apart)."""
    from deepsets.builders import build_model
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.pipelines.training.objectives import Objective

    base, spec = planted
    torch.manual_seed(0)
    model = build_model(
        spec.model_inputs(),
        dim=8,
        heads=2,
        fusion="deepset",
        task="two_tower",
        query_modalities=["user", "liked"],
        item_modalities=["item", "item_vec"],
    ).eval()
    catalogue = ItemCatalogue(spec.subset(["item", "item_vec"]), [str(base / "items.parquet")], "item_id")
    objective = Objective("two_tower", (), item_column="item_id", negatives=Negatives("catalogue", catalogue))
    # rows of the item table itself (its rows carry query columns too), so a batch item's
    # features are its catalogue row's; ten of them twice, so repeats are covered
    rows = next(iter(ParquetBatchReader(spec, base / "items.parquet", batch_size=54, key_columns=["item_id"])))
    batch = FeatureBatch.concat([rows, rows.slice(0, 10)])
    with torch.no_grad():
        loss = objective.loss(model, batch)
        queries = F.normalize(model.query(batch).fused, dim=1)  # (B, D)
        items = F.normalize(model.item(catalogue.items).fused, dim=1)  # (I, D)
        logits = queries @ items.T / model.loss_fn.temperature  # (B, I)
        target = torch.searchsorted(catalogue.ids, batch.labels["item_id"])
        full = F.cross_entropy(logits, target)
        # in-batch: each row's item against the batch's distinct items (a repeat counts once)
        batch_items = F.normalize(model.item(batch).fused, dim=1)  # (B, D)
        in_batch_logits = queries @ batch_items.T / model.loss_fn.temperature  # (B, B)
        in_batch_logits[:, 54:] = torch.where(torch.eye(64)[:, 54:].bool(), in_batch_logits[:, 54:], float("-inf"))
        in_batch_logits[54:, :10] = torch.where(
            torch.eye(64)[54:, 54:].bool(), float("-inf"), in_batch_logits[54:, :10]
        )
        in_batch = F.cross_entropy(in_batch_logits, torch.arange(64))
    assert float(full) > 0.9 * math.log(len(catalogue))  # an untrained model: near chance over the table
    assert float(loss) == pytest.approx(float(full + in_batch), rel=1e-5)


def run_in_process(planted, negatives_mode: str, steps_per_refresh: int = 1):
    """Train the planted two-tower model in-process with one kind of negatives; the validation
    recall@10 among the 200 items."""
    from deepsets.builders import build_model
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.optim import make_optimizer, make_scheduler
    from deepsets.pipelines.training.loop import evaluate, train_step
    from deepsets.pipelines.training.objectives import ItemLogQ, Objective

    base, spec = planted
    torch.manual_seed(0)
    model = build_model(
        spec.model_inputs(),
        dim=16,
        heads=2,
        fusion="deepset",
        task="two_tower",
        query_modalities=["user", "liked"],
        item_modalities=["item", "item_vec"],
    )
    ids, counts = np.unique(
        pq.read_table(base / "train", columns=["item_id"])["item_id"].to_numpy(), return_counts=True
    )
    catalogue = ItemCatalogue(spec.subset(["item", "item_vec"]), [str(base / "items.parquet")], "item_id")
    negatives = (
        None
        if negatives_mode == "in_batch"
        else Negatives(negatives_mode, catalogue, num_negatives=64, refresh_steps=steps_per_refresh)
    )
    objective = Objective("two_tower", (), item_column="item_id", item_log_q=ItemLogQ(ids, counts), negatives=negatives)
    optimizer = make_optimizer(model, "adamw", 1e-2, 0.0)
    scheduler = make_scheduler(optimizer, "constant", 1000, 0)
    for epoch in range(3):
        for batch in ParquetBatchReader(
            spec, base / "train", batch_size=100, key_columns=["item_id"], shuffle_seed=epoch
        ):
            train_step(model, batch, objective, optimizer, scheduler, torch.device("cpu"))
    valid = ParquetBatchReader(spec, base / "valid", batch_size=600, key_columns=["item_id"])
    return evaluate(model, valid, objective, torch.device("cpu"))["recall_at_10"]


@pytest.mark.parametrize("mode", ["mixed", "catalogue"])
def test_each_kind_of_negatives_learns_the_planted_preference(planted, mode):
    # chance is 10 of ~200 items (0.05); knowing the user's cluster alone gives about 0.5
    assert run_in_process(planted, mode) > 0.3
