"""Every fusion head learns the synthetic reference task above chance in a short CPU run."""

from __future__ import annotations

import pytest
import torch

from deepsets.batch import FeatureBatch
from deepsets.builders import build_model
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.fusion_heads import fusion_names
from deepsets.tasks import task_loss


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve via the rank-sum formula (ties get average ranks)."""
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype)
    for value in torch.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_auc_reference_values():
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert auc(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def reference_batches(tmp_path_factory):
    data = tmp_path_factory.mktemp("recsys6")
    synth.generate(4000, data, seed=5, progress=False)
    spec = FeatureSpec.fit(load_schema(data / "schema.toml"), data)
    batches = list(ParquetBatchReader(spec, data, batch_size=250, label_columns=["clicked"]))
    return spec, batches[:12], FeatureBatch.concat(batches[12:])  # 3000 train rows, 1000 held out


def train_and_score(
    model: torch.nn.Module, train: list, held_out: FeatureBatch, epochs: int, lr: float = 3e-3
) -> float:
    """Train ``model`` on the binary label ``clicked`` with AdamW for ``epochs`` passes over
    ``train``; its AUC on ``held_out``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in train:
            loss = task_loss("binary", model(batch).logits, batch.labels["clicked"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model(held_out).logits.squeeze(1)  # (N,)
    return auc(scores, held_out.labels["clicked"])


@pytest.mark.parametrize("fusion", fusion_names())
def test_fusion_head_learns_the_planted_signal(fusion, reference_batches):
    spec, train, held_out = reference_batches
    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), dim=32, layers=1, heads=2, fusion=fusion, fusion_layers=1)
    # chance is 0.5; with 1,000 held-out rows the standard error of an AUC is about 0.02
    assert train_and_score(model, train, held_out, epochs=3) > 0.6, fusion
