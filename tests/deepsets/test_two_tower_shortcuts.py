"""Two-tower shortcuts: a pair's own modality vectors reach the score beside the fused
embeddings; absent or ablated modalities add nothing; the compact (ablation) paths agree with
the full one; bad pairs are refused; the setting survives a checkpoint's JSON."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from deepsets.ablation import subset_scores
from deepsets.builders import build_model
from deepsets.model_args import ModelArgs
from tests.deepsets.random_batches import INFOS, random_batch

QUERY, ITEM = ["history", "country", "profile"], ["image", "frames", "tags"]
PAIRS = [("history", "image"), ("profile", "tags")]
DIM = 16


def _model(shortcuts=PAIRS):
    torch.manual_seed(0)
    return build_model(
        INFOS,
        dim=DIM,
        heads=2,
        fusion="transformer",
        fusion_layers=1,
        task="two_tower",
        query_modalities=QUERY,
        item_modalities=ITEM,
        shortcuts=shortcuts,
    ).eval()


def test_the_score_is_the_fused_part_plus_each_pairs_own_dot_product():
    model = _model()
    batch = random_batch(24, seed=1)
    with torch.no_grad():
        out = model(batch)
        parts = {}
        for side, names in (("query", [p[0] for p in PAIRS]), ("item", [p[1] for p in PAIRS])):
            tower = model.tower(side)
            vectors, present = tower.encode(batch)  # (B, M, D), (B, M)
            fused = F.normalize(tower.model.fuse(vectors, present).logits, dim=-1)  # (B, D)
            own = [
                vectors[:, tower.names.index(n)] * present[:, tower.names.index(n), None] * tower.shortcut_scale[k]
                for k, n in enumerate(names)
            ]
            parts[side] = (
                fused,
                own,
                torch.cat([fused, *own], dim=1).norm(dim=1),
            )  # norms before the final normalization
    assert out.query.shape == (24, DIM * (1 + len(PAIRS))) and out.item.shape == out.query.shape
    assert torch.allclose(out.query.norm(dim=1), torch.ones(24), atol=1e-5)
    (fq, oq, nq), (fi, oi, ni) = parts["query"], parts["item"]
    expected = (fq @ fi.T + sum(a @ b.T for a, b in zip(oq, oi))) / nq[:, None] / ni[None, :]  # (B, B)
    assert torch.allclose(out.query @ out.item.T, expected, atol=1e-5)


def test_an_absent_modality_adds_a_zero_part():
    model = _model()
    batch = random_batch(40, seed=2)
    absent = ~batch["history"].present  # (B,)
    assert absent.any() and (~absent).any()
    with torch.no_grad():
        query = model(batch).query
    first = query[:, DIM : 2 * DIM]  # the history shortcut's part
    assert torch.all(first[absent] == 0) and torch.all(first[~absent].abs().sum(dim=1) > 0)


@pytest.mark.parametrize("side", ["query", "item"])
def test_the_compact_paths_agree_with_fusing_under_the_kept_modalities(side):
    tower = _model().tower(side)
    batch = random_batch(30, seed=3)
    with torch.no_grad():
        vectors, present = tower.encode(batch)  # (N, M, D), (N, M)
        masks = torch.tensor(
            [[True, True, True], [True, False, True], [False, True, False], [False, False, False]]
        )  # (S, M)
        compact = subset_scores(tower, vectors, present, masks, batch_rows=7)  # (S, N, D')
        for s, keep in enumerate(masks):
            assert torch.allclose(compact[s], tower.fuse(vectors, present & keep).fused, atol=1e-5), keep


def test_without_shortcuts_the_tower_has_no_new_parameters():
    plain = _model(shortcuts=())
    assert not any("shortcut" in name for name in plain.state_dict())
    assert plain(random_batch(5, seed=4)).query.shape == (5, DIM)


@pytest.mark.parametrize(
    "pairs,match",
    [
        ([("image", "history")], r"each pair is \[query modality, item modality\]"),
        ([("history", "country")], r"each pair is \[query modality, item modality\]"),
        ([("history",)], "pairs"),
    ],
)
def test_bad_pairs_are_refused(pairs, match):
    with pytest.raises(ValueError, match=match):
        _model(shortcuts=pairs)


def test_shortcuts_need_a_two_tower_task_and_survive_json():
    with pytest.raises(ValueError, match="only by two_tower"):
        ModelArgs(task="binary", shortcuts=[("a", "b")])
    args = ModelArgs(task="two_tower", query_modalities=["a"], item_modalities=["b"], shortcuts=[["a", "b"]])
    saved = json.loads(json.dumps(args.to_dict()))
    assert saved["shortcuts"] == [["a", "b"]] and ModelArgs.from_dict(saved) == args
    assert "shortcuts" not in ModelArgs(task="binary").to_dict()
