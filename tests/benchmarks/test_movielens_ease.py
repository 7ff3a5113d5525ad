"""EASE projected into two-tower features (``benchmarks/movielens/ease.py``): the dot product
of the two sides is the projected EASE score, and a training row is scored by a fit that never
saw its own interaction."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.movielens.baselines import ease_weights, history_rows
from benchmarks.movielens.ease import FOLDS, earlier_items, ease_folder, ease_projections, fold_of, two_tower_run

L2 = 5.0


def interactions(seed: int, users: int = 12, items: int = 15, per_user: int = 6):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), per_user)
    item = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(users)])
    split = np.tile(np.r_[np.zeros(per_user - 2, int), 1, 2], users)  # the last two per user held out
    return user, item, split, items


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_earlier_items_are_the_same_users_rows_before(seed):
    user, item, _, items = interactions(seed)
    earlier = earlier_items(user, item, items).toarray()
    for r in range(len(user)):
        expected = np.zeros(items)
        before = (user == user[r]) & (np.arange(len(user)) < r)
        expected[item[before]] = 1
        np.testing.assert_array_equal(earlier[r], expected)


def test_profiles_are_projected_ease_scores_fitted_without_the_row():
    user, item, split, items = interactions(3)
    rank = 6
    profiles, vectors, recent = ease_projections(user, item, split, items, L2, rank=rank)
    assert recent is None
    assert profiles.shape == (len(user), rank) and vectors.shape == (items, rank)
    basis = vectors / np.sqrt(items)
    np.testing.assert_allclose(basis.T @ basis, np.eye(rank), atol=1e-5)  # orthonormal columns
    earlier = earlier_items(user, item, items)
    train = split == 0
    raw = np.zeros((len(user), rank))
    raw[~train] = earlier[~train] @ (ease_weights(user[train], item[train], items, L2) @ basis)
    fold = fold_of(len(user))
    for f in range(FOLDS):
        fit = train & (fold != f)
        raw[train & (fold == f)] = earlier[train & (fold == f)] @ (
            ease_weights(user[fit], item[fit], items, L2) @ basis
        )
    np.testing.assert_allclose(profiles, raw / raw[train].std(), rtol=1e-4, atol=1e-5)
    # a held-out row: its profile . item vector is EASE's score of that item, projected on the basis
    row = int(np.flatnonzero(~train)[0])
    score = earlier[row].toarray()[0] @ ease_weights(user[train], item[train], items, L2)  # (I,)
    np.testing.assert_allclose(
        profiles[row] @ vectors.T * raw[train].std() / np.sqrt(items), score @ basis @ basis.T, rtol=1e-4, atol=1e-6
    )


def test_a_training_rows_own_interaction_does_not_reach_its_profile():
    user, item, split, items = interactions(5)
    fold = fold_of(len(user))
    rank_in_user = np.arange(len(user)) - np.searchsorted(user, user)  # rows of the same user before
    row = int(
        np.flatnonzero((split == 0) & (fold == 0) & (rank_in_user >= 2))[0]
    )  # a row with earlier movies: a nonzero profile
    changed = item.copy()
    changed[row] = next(i for i in range(items) if i not in item[user == user[row]])  # the row's own movie, moved
    scores = []
    for rated in (item, changed):
        profiles, vectors, _ = ease_projections(
            user, rated, split, items, L2, rank=items
        )  # full rank: the projection is the score
        score = profiles[row] @ vectors.T  # (I,) EASE scores of row's fit, up to the global scale
        assert np.linalg.norm(score) > 0
        scores.append(score / np.linalg.norm(score))
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)
    # contrast: a later row of the same user has the moved movie among its earlier ones and is
    # scored by a fit that holds it, so its profile does change
    later = int(np.flatnonzero((user == user[row]) & (split == 0) & (fold != 0) & (np.arange(len(user)) > row))[0])
    moved = [ease_projections(user, rated, split, items, L2, rank=items) for rated in (item, changed)]
    assert not np.allclose(moved[0][0][later] @ moved[0][1].T, moved[1][0][later] @ moved[1][1].T, atol=1e-4)


def test_recent_profiles_project_the_recency_weighted_history():
    """``ease_recent`` is ``ease_profile``'s computation on the history weighted by
    ``decay ** age``: for a held-out row, its dot with the item vectors is the recency-weighted
    EASE score (``history_rows``) projected; with decay 1 it equals ``ease_profile``."""
    user, item, split, items = interactions(4)
    profiles, vectors, recent = ease_projections(user, item, split, items, L2, rank=items, decay=0.7)
    train = split == 0
    for row in np.flatnonzero(~train)[:3]:
        history = item[(user == user[row]) & (np.arange(len(user)) < row)]  # time order
        weights = ease_weights(user[train], item[train], items, L2)
        want = history_rows([history], items, decay=0.7).toarray()[0] @ weights  # (I,)
        got = recent[row] @ vectors.T  # (I,) up to the training rows' scale
        np.testing.assert_allclose(got / np.linalg.norm(got), want / np.linalg.norm(want), atol=1e-5)
    same = ease_projections(user, item, split, items, L2, rank=6, decay=1.0)
    np.testing.assert_allclose(same[2], same[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="decay"):
        ease_projections(user, item, split, items, L2, rank=6, decay=0.0)


def test_bad_rank_is_refused():
    user, item, split, items = interactions(0)
    with pytest.raises(ValueError, match="rank"):
        ease_projections(user, item, split, items, L2, rank=items + 1)


def test_run_names_and_folders_tell_the_variants_apart(tmp_path):
    assert two_tower_run("in_batch", 0, 5, ease=True) == "two-tower-in_batch-ease-rec-s0-e5"
    assert two_tower_run("in_batch", 0, 5, ease=True, recent=False) == "two-tower-in_batch-ease-s0-e5"
    assert two_tower_run("mixed", "*", 5, ease=False) == "two-tower-mixed-s*-e5"
    assert (
        two_tower_run("in_batch", 1, 5, ease=True, dim=128, rank=128) == "two-tower-in_batch-ease-rec-d128-r128-s1-e5"
    )
    assert (
        two_tower_run("in_batch", 1, 5, ease=False, rank=128) == "two-tower-in_batch-s1-e5"
    )  # no EASE features, no rank
    assert ease_folder(tmp_path) == tmp_path / "data_ease"
    assert ease_folder(tmp_path, 128) == tmp_path / "data_ease_r128"
    assert ease_folder(tmp_path, 128, recent=False) == tmp_path / "data_ease_r128_plain"
