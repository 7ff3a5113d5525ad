"""Two-tower models: each tower reads only its own modalities, embeddings are unit length and
do not depend on the batch, and bad tower lists are refused."""

from __future__ import annotations

import pytest
import torch

from deepsets.batch import FeatureBatch
from deepsets.builders import build_model
from tests.deepsets.random_batches import INFOS, random_batch

QUERY, ITEM = ["history", "country", "profile"], ["image", "frames", "tags"]


def _model(fusion="transformer"):
    torch.manual_seed(0)
    return build_model(
        INFOS,
        dim=16,
        heads=2,
        fusion=fusion,
        fusion_layers=1,
        task="two_tower",
        query_modalities=QUERY,
        item_modalities=ITEM,
    ).eval()


@pytest.mark.parametrize("fusion", ["deepset", "transformer", "concat"])
def test_towers_read_only_their_modalities(fusion):
    model = _model(fusion)
    a, b = random_batch(12, seed=1), random_batch(12, seed=2)
    mixed = FeatureBatch({**{n: a[n] for n in QUERY}, **{n: b[n] for n in ITEM}}, 12)  # a's query side, b's item side
    with torch.no_grad():
        out_a, out_b, out_mixed = model(a), model(b), model(mixed)
        item_only = model.tower("item")(FeatureBatch({n: b[n] for n in ITEM}, 12)).fused
    assert torch.allclose(out_mixed.query, out_a.query, atol=1e-6)
    assert torch.allclose(out_mixed.item, out_b.item, atol=1e-6)
    assert torch.allclose(item_only, out_b.item, atol=1e-6)  # the query columns need not exist
    assert torch.allclose(out_a.item.norm(dim=1), torch.ones(12), atol=1e-5)


def test_a_row_embeds_alike_in_any_batch():
    model = _model()
    batch = random_batch(10, seed=3)
    with torch.no_grad():
        whole = model(batch)
        alone = model(batch.slice(4, 5))
    assert torch.allclose(whole.query[4:5], alone.query, atol=1e-5)
    assert torch.allclose(whole.item[4:5], alone.item, atol=1e-5)


@pytest.mark.parametrize(
    "query,item,match",
    [
        ([], ITEM, "query_modalities"),
        (QUERY, ["image", "nope"], "unknown"),
        (QUERY + ["image"], ITEM, "a modality belongs to one tower"),
    ],
)
def test_bad_tower_lists_are_refused(query, item, match):
    with pytest.raises(ValueError, match=match):
        build_model(INFOS, dim=16, heads=2, task="two_tower", query_modalities=query, item_modalities=item)


def test_tower_names():
    model = _model()
    assert model.tower("query").names == tuple(sorted(QUERY))
    with pytest.raises(ValueError, match="tower must be one of"):
        model.tower("user")
