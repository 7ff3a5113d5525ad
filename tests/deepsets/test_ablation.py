"""Subset enumeration, exact Shapley weights, the AUC metric and the permutation helper."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_auroc

from deepsets import ablation as ab
from deepsets.tasks import ablation_metric


def brute_force_shapley(values: dict, m: int) -> list:
    """Average marginal contribution over all orderings (the definition)."""
    phi = [0.0] * m
    orders = list(itertools.permutations(range(m)))
    for order in orders:
        held = frozenset()
        for player in order:
            phi[player] += values[held | {player}] - values[held]
            held = held | {player}
    return [p / len(orders) for p in phi]


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_subsets_are_every_combination_once(m):
    masks = ab.subset_masks(m)
    assert masks.shape == (2**m, m)
    seen = {frozenset(np.nonzero(row.numpy())[0].tolist()) for row in masks}
    expected = {frozenset(c) for k in range(m + 1) for c in itertools.combinations(range(m), k)}
    assert seen == expected and len(seen) == 2**m
    assert not masks[0].any() and masks[-1].all()
    assert ab.subset_index(masks).tolist() == list(range(2**m))  # where a subset's row is


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 4), data=st.data())
def test_shapley_matrix_matches_brute_force_and_is_efficient(m, data):
    raw = data.draw(st.lists(st.floats(-5, 5), min_size=2**m, max_size=2**m))
    masks = ab.subset_masks(m)
    values = {frozenset(np.nonzero(row.numpy())[0].tolist()): v for row, v in zip(masks, raw)}
    phi = (ab.shapley_matrix(m) @ torch.tensor(raw, dtype=torch.float64)).tolist()
    assert phi == pytest.approx(brute_force_shapley(values, m), abs=1e-9)
    assert sum(phi) == pytest.approx(raw[-1] - raw[0], abs=1e-9)  # efficiency


def test_shapley_of_an_additive_game_is_each_players_share():
    weights = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    values = ab.subset_masks(3).double() @ weights  # v(S) = sum of weights in S
    assert (ab.shapley_matrix(3) @ values).tolist() == pytest.approx(weights.tolist())


def test_auc_matches_torchmetrics_and_hand_values():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(500, generator=g), (torch.rand(500, generator=g) > 0.6).long()
    assert float(ab.auc(scores, labels)) == pytest.approx(float(binary_auroc(scores, labels)), abs=1e-6)
    assert float(ab.auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))) == pytest.approx(0.75)
    assert float(ab.auc(torch.zeros(10), torch.tensor([0, 1] * 5))) == 0.5  # ties count half
    batched = ab.auc(torch.stack([scores, -scores]), labels)  # (2,)
    assert float(batched[0] + batched[1]) == pytest.approx(1.0)
    assert math.isnan(float(ab.auc(torch.randn(4), torch.ones(4))))


def test_task_metrics():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]]])  # (1, N=3, K=2)
    assert float(ablation_metric("multiclass", logits, torch.tensor([0, 1, 0]))[0]) == pytest.approx(2 / 3)
    rmse = ablation_metric("regression", logits[..., :1], torch.tensor([2.0, 0.0, 0.0]))
    assert float(rmse[0]) == pytest.approx(-math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="no ablation metric for task 'listwise'"):
        ablation_metric("listwise", logits, torch.zeros(3))
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        ablation_metric("ranking", logits, torch.zeros(3))


def test_permutation_keeps_presence_and_shuffles_only_present_rows():
    vectors = torch.arange(6 * 2 * 1, dtype=torch.float32).view(6, 2, 1)  # (6, 2, 1)
    present = torch.tensor([[1, 1], [0, 1], [1, 1], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    out = ab.permuted_vectors(vectors, present, 0, torch.Generator().manual_seed(3))
    rows = present[:, 0]
    assert torch.equal(out[:, 1], vectors[:, 1]) and torch.equal(out[~rows, 0], vectors[~rows, 0])
    assert sorted(out[rows, 0, 0].tolist()) == sorted(vectors[rows, 0, 0].tolist())


def test_max_pool_wins_are_shares():
    winners = torch.tensor([[0, 1, 1], [2, 2, 2], [-1, -1, -1]])
    assert ab.max_pool_wins(winners, 3).tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6])


def test_spearman():
    assert ab.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert ab.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize("fusion", ["transformer", "deepset"])
def test_subset_scores_equal_fusing_each_subset_alone_whatever_the_chunking(fusion):
    from deepsets.builders import build_model
    from deepsets.inference import collect_outputs
    from tests.deepsets.random_batches import INFOS, random_batch

    torch.manual_seed(0)
    model = build_model(INFOS, dim=16, heads=2, fusion=fusion).eval()
    cached = collect_outputs(model, [random_batch(40, seed=1), random_batch(13, seed=2)], ("vectors", "present"))
    vectors, present = cached["vectors"], cached["present"]
    masks = ab.subset_masks(len(model.names))
    with torch.no_grad():
        expected = torch.stack([model.fuse(vectors, present & keep).logits for keep in masks])  # (S, N, K)
    for batch_rows in (7, 53, 100_000):  # rows split, one subset a call, many subsets a call
        torch.testing.assert_close(
            ab.subset_scores(model, vectors, present, masks, batch_rows=batch_rows), expected, atol=1e-5, rtol=1e-5
        )


@settings(max_examples=25, deadline=None)
@given(
    head=st.sampled_from(
        [
            "transformer-1",
            "transformer-2",
            "transformer-3",
            "deepset-mean",
            "deepset-sum",
            "deepset-max",
            "deepset-median",
            "attention",
        ]
    ),
    rows=st.integers(1, 30),
    share=st.floats(0.0, 1.0),
    subsets=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_fusing_only_each_rows_present_subsets_equals_fusing_every_subset(head, rows, share, subsets, seed):
    """The compact path (one fusion per row and distinct kept set, over the kept vectors only)
    gives the dense path's scores for any presence and any list of subsets (repeats included)."""
    from deepsets.builders import build_model
    from tests.deepsets.random_batches import INFOS

    torch.manual_seed(seed)
    fusion, detail = (head.split("-") + [""])[:2]
    options = (
        {"fusion_layers": int(detail)} if fusion == "transformer" else {"fusion_pooling": detail} if detail else {}
    )
    model = build_model(INFOS, dim=8, heads=2, fusion=fusion, **options).eval()
    m = len(model.names)
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(rows, m, 8, generator=generator)  # (N, M, D)
    present = torch.rand(rows, m, generator=generator) < share  # (N, M)
    masks = torch.rand(subsets, m, generator=generator) < 0.5  # (S, M)
    compact = ab.subset_scores(model, vectors, present, masks, batch_rows=17)
    dense = ab.subset_scores_dense(model, vectors, present, masks)
    torch.testing.assert_close(compact, dense, atol=2e-5, rtol=1e-5)


def test_sampled_shapley_is_exact_for_an_additive_game_and_always_efficient():
    weights = torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0], dtype=torch.float64)
    orders, masks = ab.permutation_prefixes(5, 7, seed=3)  # rounded up to 8 orders, in reversed pairs
    assert orders.shape == (8, 5) and torch.equal(orders[1], orders[0].flip(0))
    assert masks[:, 0].sum() == 0 and masks[:, -1].all() and torch.equal(masks.sum(dim=2)[0], torch.arange(6))
    phi, se = ab.permutation_shapley((masks.double() * weights).sum(dim=2), orders)  # v(S) = sum of S's weights
    torch.testing.assert_close(phi, weights)
    assert se.abs().max() == 0
    table = torch.randn(32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # any game
    phi, _ = ab.permutation_shapley(table[ab.subset_index(masks.reshape(-1, 5))].view(8, 6), orders)
    assert float(phi.sum()) == pytest.approx(float(table[-1] - table[0]), abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 permutations"):
        ab.permutation_prefixes(5, 1, seed=0)


def test_sampled_shapley_falls_within_its_standard_error_of_the_exact_values():
    m = 7
    table = torch.randn(
        2**m, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )  # a game with interactions
    exact = ab.shapley_matrix(m) @ table
    orders, masks = ab.permutation_prefixes(m, 400, seed=2)
    phi, se = ab.permutation_shapley(table[ab.subset_index(masks.reshape(-1, m))].view(400, m + 1), orders)
    assert ((phi - exact).abs() <= 3 * se).all()
    assert (se > 0).all() and (se < 0.3 * exact.abs().max()).all()


class PlantedModel:
    """The reference workload's own label model as a set-fusion model: each modality's vector
    is its standardized planted signal (D = 1), and the fused score is the weighted sum of the
    present ones, exactly how ``deepsets.features.synth`` draws ``clicked``."""

    def __init__(self, names, weights):
        self.names = tuple(names)
        self.weights = torch.tensor([weights[n] for n in names], dtype=torch.float64)

    def fuse(self, vectors, present):
        from types import SimpleNamespace

        logits = (torch.where(present, vectors[..., 0].double(), 0.0) @ self.weights).unsqueeze(1)  # (B, 1)
        return SimpleNamespace(logits=logits)


def test_shapley_and_leave_one_out_rank_the_planted_contributions_of_the_workload(tmp_path):
    """With the model that generated the labels, both methods recover truth.json's ranking:
    what is left between a trained model's ranking and the truth is the model's, not the method's."""
    import pyarrow.parquet as pq

    from deepsets.features import synth, synth_signals

    summary = synth.generate(20_000, tmp_path, seed=3, progress=False)
    table = pq.read_table([str(tmp_path / f) for f in summary["files"]])
    truth = json.loads((tmp_path / "truth.json").read_text())["contribution"]
    signals = synth_signals.signals(table, synth_signals.make_tables(3))
    names = list(synth_signals.MODALITIES)
    model = PlantedModel(names, synth_signals.WEIGHTS)
    vectors = torch.tensor(np.stack([signals[n] for n in names], axis=1)).unsqueeze(-1)  # (N, M, 1)
    present = torch.tensor(np.stack([signals[n] != 0 for n in names], axis=1))  # (N, M)
    labels = torch.tensor(table.column("clicked").to_numpy()).double()
    masks = ab.subset_masks(len(names))
    values = ab.auc(ab.subset_scores(model, vectors, present, masks)[..., 0], labels)  # (128,)
    shapley = ab.shapley_matrix(len(names)) @ values
    leave_one_out = values[-1] - values[masks.shape[0] - 1 - 2 ** torch.arange(len(names))]
    planted = [truth[n] for n in names]
    assert summary["rows"] == 20_000 and float(values[-1]) > 0.85
    assert ab.spearman(shapley.tolist(), planted) >= 0.9
    assert ab.spearman(leave_one_out.tolist(), planted) >= 0.9


@pytest.mark.parametrize("case", ["plain products", "sharp attention", "row blocks"])
def test_the_compact_transformer_path_equals_the_dense_one_on_its_fallbacks(case, monkeypatch):
    """Without oneDNN's fused products, with attention logits too spread for the shared exponent
    (the CLS key more than SAFE_SHIFT below a query's largest), and in row blocks, the compact
    path still gives the dense path's scores."""
    from deepsets.builders import build_model
    from deepsets.fusion import transformer_compact, transformer_folded
    from tests.deepsets.random_batches import INFOS

    torch.manual_seed(0)
    model = build_model(INFOS, dim=16, heads=2, fusion="transformer", fusion_layers=2).eval()
    m = len(model.names)
    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(23, m, 16, generator=generator)  # (N, M, D)
    present = torch.rand(23, m, generator=generator) < 0.7  # (N, M)
    layers = model.fusion.head.encoder.layers
    if case == "plain products":
        monkeypatch.setattr(transformer_folded, "_fused_products_work", lambda layer: False)
        assert not transformer_folded.fold_layer(layers[0]).fused_ffn
    if case == "sharp attention":
        with torch.no_grad():
            layers[0].self_attn.in_proj_weight.mul_(40.0)
        x = torch.cat(
            [model.fusion.head.cls.expand(23, 1, 16), vectors + model.fusion.head.type_embedding], dim=1
        )  # (N, 1+M, D)
        assert not transformer_compact.first_layer_state(transformer_folded.fold_layer(layers[0]), x).exponentiated
    masks = ab.subset_masks(m)
    compact = ab.subset_scores(
        model, vectors, present, masks, batch_rows=17, row_block=5 if case == "row blocks" else 16384
    )
    dense = ab.subset_scores_dense(model, vectors, present, masks)
    torch.testing.assert_close(compact, dense, atol=2e-5, rtol=1e-5)
