"""The invariants of docs/design.md, checked on every fusion head (each test can fail: see the
module docstring of each check for what would break it)."""

from __future__ import annotations

import pytest
import torch

from deepsets.batch import FeatureBatch, ModalityTensors
from deepsets.builders import build_model
from deepsets.fusion_heads import fusion_names
from tests.deepsets.random_batches import INFOS, concat_rows, random_batch

SET_FUSIONS = [f for f in fusion_names() if f not in ("concat", "tmm_deepset", "mmt")]
ATOL = 1e-5


def make(fusion: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(INFOS, dim=16, layers=1, heads=2, fusion=fusion, fusion_layers=1, **kwargs)
    return model.eval()


def fused(model, batch: FeatureBatch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).fused


@pytest.mark.parametrize("fusion", fusion_names())
def test_row_independent_of_batch_and_padding(fusion):
    """Invariant 1: alone, among random rows, and among much longer rows -> same output."""
    model = make(fusion)
    row = random_batch(1, seed=1, presence=1.0, max_len=6)
    alone = fused(model, row)
    crowd = fused(model, concat_rows(random_batch(7, seed=2), row, random_batch(5, seed=3)))[7:8]
    long_rows = random_batch(4, seed=4, presence=1.0, max_len=40)
    beside_long = fused(model, concat_rows(long_rows, row))[4:5]
    torch.testing.assert_close(crowd, alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(beside_long, alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fusion", fusion_names())
def test_modality_dict_order_does_not_matter(fusion):
    """Invariant 2 (model level): the batch's modality order is irrelevant."""
    model = make(fusion)
    batch = random_batch(6, seed=5)
    reordered = FeatureBatch(dict(reversed(list(batch.modalities.items()))), batch.num_rows, batch.labels)
    torch.testing.assert_close(fused(model, reordered), fused(model, batch), atol=0, rtol=0)


def shuffled_set(batch: FeatureBatch, name: str, seed: int) -> FeatureBatch:
    """The same rows with the elements of ``name`` shuffled within each row."""
    g = torch.Generator().manual_seed(seed)
    m = batch[name]
    values = m.values.clone()
    for i in range(batch.num_rows):
        lo, hi = int(m.offsets[i]), int(m.offsets[i + 1])
        values[lo:hi] = values[lo:hi][torch.randperm(hi - lo, generator=g)]
    mods = dict(batch.modalities)
    mods[name] = ModalityTensors(values, m.present, m.offsets)
    return FeatureBatch(mods, batch.num_rows, batch.labels)


@pytest.mark.parametrize("fusion", fusion_names())
@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_id_set_element_order_does_not_matter(fusion, pooling):
    """Invariant 2: reordering a set's elements changes nothing (no positions on id_set)."""
    model = make(fusion, pooling=pooling)
    batch = random_batch(8, seed=6, presence=1.0, max_len=10)
    torch.testing.assert_close(fused(model, shuffled_set(batch, "tags", 7)), fused(model, batch), atol=ATOL, rtol=0)


def test_history_order_does_matter():
    """The opposite check: an id_sequence is ordered, so shuffling it must change the output
    (otherwise the invariance test above would prove nothing)."""
    model = make("transformer")
    batch = random_batch(8, seed=6, presence=1.0, max_len=10)
    assert not torch.allclose(fused(model, shuffled_set(batch, "history", 7)), fused(model, batch), atol=1e-4)


def with_modality(batch: FeatureBatch, name: str, present: bool, zero: bool) -> FeatureBatch:
    m = batch[name]
    mods = dict(batch.modalities)
    b = batch.num_rows
    mask = torch.full((b,), present)
    if m.offsets is None:
        values = torch.zeros_like(m.values) if zero else m.values
        observed = None if m.observed is None else torch.full_like(m.observed, present)
        mods[name] = ModalityTensors.fixed(values, mask, observed)
    else:
        lengths = torch.full((b,), 3 if present else 0)
        shape = (int(lengths.sum()),) + tuple(m.values.shape[1:])
        mods[name] = ModalityTensors.from_lengths(torch.zeros(shape, dtype=m.values.dtype), lengths, mask)
    return FeatureBatch(mods, b, batch.labels)


@pytest.mark.parametrize("fusion", [f for f in fusion_names() if f not in ("concat", "tmm_deepset")])
def test_missing_is_not_zero(fusion):
    """Invariant 3: a missing modality differs from a present all-zero one."""
    model = make(fusion)
    batch = random_batch(4, seed=8, presence=1.0)
    missing = fused(model, with_modality(batch, "image", present=False, zero=True))
    zeros = fused(model, with_modality(batch, "image", present=True, zero=True))
    assert (missing - zeros).abs().max() > 1e-4


@pytest.mark.parametrize("fusion", fusion_names())
def test_all_missing_is_finite(fusion):
    """Invariant 4: a row with every modality missing still gets a finite embedding."""
    model = make(fusion)
    nothing = {i.name: torch.zeros(3, dtype=torch.bool) for i in INFOS}
    out = fused(model, random_batch(3, seed=9, present=nothing))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("fusion", fusion_names())
def test_same_seed_same_model_and_gradients_reach_every_encoder(fusion):
    """Invariant 5, plus: a loss reaches every encoder's parameters."""
    a, b = make(fusion, seed=11), make(fusion, seed=11)
    for (name, pa_), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa_, pb), name
    batch = random_batch(16, seed=12, presence=1.0)
    torch.testing.assert_close(fused(a, batch), fused(b, batch), atol=0, rtol=0)
    a.train()
    a(batch).logits.sum().backward()
    for name, encoder in a.encoders.items():
        grads = [p.grad for p in encoder.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches encoder {name}"


def test_model_output_shapes():
    model = make("deepset", fusion_pooling="max")
    out = model(random_batch(5, seed=13))
    assert out.fused.shape[0] == 5 and out.logits.shape == (5, 1)
    assert out.modality_vectors.shape == (5, len(INFOS), 16)
    assert out.present.shape == (5, len(INFOS)) and out.winners.shape == (5, 16)
    assert out.names == tuple(sorted(i.name for i in INFOS))


@pytest.mark.parametrize("fusion", fusion_names())
def test_every_parameter_gets_a_gradient_when_a_modality_is_absent_from_the_batch(fusion):
    """DDP (find_unused_parameters=False) fails on a parameter left out of the graph; a worker's
    slice can easily hold no row of a sparse modality."""
    model = make(fusion).train()
    nothing = {"history": torch.zeros(6, dtype=torch.bool), "tags": torch.zeros(6, dtype=torch.bool)}
    model(random_batch(6, seed=14, present=nothing)).logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_id_tables_start_small_with_a_zero_padding_row():
    """Every id table (ids, sets, categories, positions) starts N(0, 0.02^2), padding row zero:
    torch's N(0, 1) start drowns what a few hundred Adam steps teach an id (see
    deepsets.encoders.base.embedding_table)."""
    model = make("deepset")
    tables = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
    assert {name.split(".")[1] for name in tables} == {"frames", "history", "tags", "country"}  # frames: positions
    for name, table in tables.items():
        weight = table.weight.detach()
        if table.padding_idx is not None:
            assert torch.count_nonzero(weight[table.padding_idx]) == 0, name
            weight = torch.cat([weight[: table.padding_idx], weight[table.padding_idx + 1 :]])
        assert 0.015 < float(weight.std()) < 0.025, (name, float(weight.std()))


def test_an_embedding_table_too_big_to_build_is_refused_with_its_memory():
    from deepsets.modality import ModalityInfo

    huge = ModalityInfo("clicks", "id_set", num_embeddings=3_000_000_001)
    with pytest.raises(
        ValueError,
        match=r"modality 'clicks': an embedding table of 3,000,000,001 rows x 64 is 715.3 GiB of weights .* max_size, min_count or a smaller hash_buckets",
    ):
        build_model([huge], dim=64)
