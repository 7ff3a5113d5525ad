"""The MMT baseline: one transformer over [CLS, every token of every present modality]."""

from __future__ import annotations

import torch

from deepsets.builders import build_model
from deepsets.jagged import bucket_layout, length_buckets
from tests.deepsets.random_batches import INFOS, random_batch


def mmt(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_model(INFOS, dim=16, heads=2, fusion="mmt", fusion_layers=2, **kwargs).double().eval()


def by_hand(model, batch, row: int) -> torch.Tensor:
    """Row ``row``'s fused vector, its token sequence assembled here one modality at a time."""
    tokens = [model.cls]
    for m, name in enumerate(model.names):
        modality = batch[name]
        if not bool(modality.present[row]):
            continue
        encoded = model.encoders[name](modality)
        if encoded.offsets is None:
            own = encoded.tokens[row : row + 1]
        else:
            own = encoded.tokens[int(encoded.offsets[row]) : int(encoded.offsets[row + 1])]
        tokens.append(own + model.modality_type[m])
    sequence = torch.cat([t.reshape(-1, model.cls.numel()) for t in tokens])  # (T, D)
    offsets = torch.tensor([0, sequence.shape[0]])
    layout = bucket_layout(offsets, length_buckets(offsets[1:] - offsets[:-1]))
    for layer in model.layers:
        sequence = layer(sequence, layout)
    return model.norm(sequence[0])


def double(batch):
    for m in batch.modalities.values():
        if m.values.is_floating_point():
            m.values = m.values.double()
    return batch


def test_each_row_is_its_own_sequence_of_present_tokens():
    model = mmt()
    batch = double(random_batch(9, seed=3, presence=0.6, max_len=7))
    with torch.no_grad():
        fused = model(batch).fused  # (B, D)
        for row in range(batch.num_rows):
            torch.testing.assert_close(fused[row], by_hand(model, batch, row))


def test_a_missing_modality_has_no_influence_and_all_missing_is_finite():
    model = mmt(seed=1)
    batch = double(random_batch(6, seed=4, presence=0.5, max_len=5))
    country = batch["country"]
    assert (~country.present).any() and country.present.any()
    garbage = country.values.clone()
    garbage[~country.present] = 7  # an id where the category is missing: must not be read
    with torch.no_grad():
        out = model(batch)
        country.values = garbage
        torch.testing.assert_close(model(batch).fused, out.fused)
    assert out.present.tolist() == [[bool(batch[n].present[r]) for n in model.names] for r in range(6)]
    assert out.modality_vectors is None and out.logits.shape == (6, 1)
    gone = {name: torch.zeros(6, dtype=torch.bool) for name in batch.names}
    empty = double(random_batch(6, seed=4, present=gone))
    with torch.no_grad():
        nothing = model(empty).fused  # only the CLS token in every row
        torch.testing.assert_close(nothing, by_hand(model, empty, 0).expand(6, -1))
    assert torch.isfinite(nothing).all()


def test_modality_dropout_only_while_training():
    model = mmt(seed=2, modality_dropout=0.9)
    batch = double(random_batch(32, seed=5))
    with torch.no_grad():
        assert torch.equal(model(batch).fused, model(batch).fused)  # eval: nothing dropped, deterministic
        model.train()
        torch.manual_seed(0)
        dropped = model(batch).present
    assert dropped.sum() < batch_present(batch).sum()


def batch_present(batch) -> torch.Tensor:
    return torch.stack([batch[n].present for n in batch.names], dim=1)
