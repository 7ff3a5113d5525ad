"""Per-query ranking metrics of many subsets at once, and their bootstrap over queries."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.ablation_ranking import GroupLayout, bootstrap_counts, bootstrap_means
from deepsets.ranking import mrr, ndcg_at_k, pad_groups, recall_at_k


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(2, 60),
    groups=st.integers(1, 8),
    subsets=st.integers(1, 5),
    k=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_group_layout_values_equal_ranking_each_subset_alone(rows, groups, subsets, k, seed):
    generator = torch.Generator().manual_seed(seed)
    group = torch.randint(groups, (rows,), generator=generator) * 7  # ids need not be contiguous
    labels = torch.randint(0, 3, (rows,), generator=generator).double()
    labels[0] = 1.0  # at least one group counts
    scores = torch.randint(0, 4, (subsets, rows), generator=generator).double()  # ties on purpose
    layout = GroupLayout(labels, group)
    values = layout.values(scores, k)
    for s in range(subsets):
        padded, relevance, mask = pad_groups(scores[s], labels, group)
        counted = (torch.where(mask, relevance, 0.0) > 0).any(dim=1)
        assert layout.num_groups == int(counted.sum())
        for name, want in (
            (f"ndcg_at_{k}", ndcg_at_k(padded, relevance, mask, k)),
            ("mrr", mrr(padded, relevance, mask)),
            (f"recall_at_{k}", recall_at_k(padded, relevance, mask, k)),
        ):
            torch.testing.assert_close(values[name][s], want[counted].double(), atol=1e-12, rtol=0)


def test_a_set_without_any_relevant_row_is_refused():
    with pytest.raises(ValueError, match="no query group has a relevant row"):
        GroupLayout(torch.zeros(4), torch.tensor([0, 0, 1, 1]))


def test_bootstrap_means_equal_the_means_of_resampled_queries():
    values = torch.rand(3, 50, dtype=torch.float64)  # (S, U)
    counts = bootstrap_counts(50, 20, seed=1)  # (B, U)
    assert counts.sum(dim=1).eq(50).all()
    generator = torch.Generator().manual_seed(1)
    draws = torch.randint(50, (20, 50), generator=generator)  # the same draws, as indices
    torch.testing.assert_close(bootstrap_means(values, counts), values[:, draws].mean(dim=2).T)
