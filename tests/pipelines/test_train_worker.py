"""The training worker's steps without Ray (one worker on the CPU): an epoch, validation, epoch
selection with patience, and a checkpoint that a fresh worker resumes from exactly where the
uninterrupted one went on."""

from __future__ import annotations

import pytest
import torch

from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.models.checkpoint import load_checkpoint
from deepsets.pipelines.training.loop import train_one_epoch
from deepsets.pipelines.training.progress import EpochProgress
from deepsets.pipelines.training.selection import SCORE_KEY
from deepsets.pipelines.training.worker import (
    BestEpoch,
    build_state,
    resume,
    select_epoch,
    validate,
    write_checkpoint,
)


def _state(demo_data, demo_spec, **training):
    cfg = default_demo_config(demo_data, workers=1)
    cfg = cfg.model_copy(
        update={
            "model": cfg.model.replace(dim=16, layers=0, heads=2, fusion="deepset"),
            "training": cfg.training.model_copy(update={"batch_size": 256, **training}),
        }
    )
    loop_config = {"config": cfg, "spec": demo_spec.to_dict()}
    state = build_state(loop_config, rank=0, world=1, device=torch.device("cpu"), prepare_model=lambda model: model)
    state.model.train()
    return state


def _epoch(state, epoch):
    metrics = train_one_epoch(state, epoch, EpochProgress("off", epoch + 1, state.cfg.training.epochs, 1))
    metrics.update(validate(state))
    return metrics, select_epoch(state, epoch, metrics)


def test_best_epoch_keeps_the_first_of_equals_and_counts_stale_epochs():
    best = BestEpoch()
    for epoch, score in enumerate([0.5, 0.7, 0.7, 0.6]):
        best.record(epoch, score)
    assert (best.epoch, best.score, best.stale_epochs) == (1, 0.7, 2)
    assert best.patience_spent(2) and not best.patience_spent(3) and not best.patience_spent(0)
    assert BestEpoch.from_dict(best.to_dict()) == best
    assert BestEpoch.from_dict({}) == BestEpoch()  # a checkpoint written before epoch selection


def test_an_epoch_reports_its_metrics_and_selects_on_validation(demo_data, demo_spec):
    state = _state(demo_data, demo_spec, epochs=2)
    metrics, stop = _epoch(state, 0)
    rows = 3000  # the demo's train rows (3,600 rows, a sixth of them in valid)
    assert metrics["epoch"] == 0 and metrics["step"] == state.step == state.steps_per_epoch == rows // 256
    assert metrics["train_rows_dropped"] == rows % 256 and metrics["train_rows_decoded"] == rows
    assert set(metrics) >= {"train_loss", "valid_loss", "valid_auc", SCORE_KEY} and metrics["ray_nodes"] == 1
    assert metrics[SCORE_KEY] == metrics["valid_auc"] and not stop  # binary selects on valid_auc; no patience
    assert (state.best.epoch, state.best.score) == (0, metrics["valid_auc"])


def test_patience_stops_after_epochs_without_improvement(demo_data, demo_spec, monkeypatch):
    state = _state(demo_data, demo_spec, epochs=5, patience=1)
    scores = iter([0.8, 0.7, 0.9])
    monkeypatch.setattr(type(state.selection), "score", lambda self, metrics: next(scores))
    stops = [select_epoch(state, epoch, {}) for epoch in range(2)]
    assert stops == [False, True] and (state.best.epoch, state.best.stale_epochs) == (0, 1)


def test_a_resumed_worker_goes_on_as_the_uninterrupted_one(demo_data, demo_spec, tmp_path):
    state = _state(demo_data, demo_spec, epochs=2)
    first, _ = _epoch(state, 0)
    write_checkpoint(state, 0, str(tmp_path))
    went_on, _ = _epoch(state, 1)

    saved, _, config, args = load_checkpoint(tmp_path)
    assert (saved.epoch, saved.step) == (0, state.steps_per_epoch)
    assert saved.selection == {"best_epoch": 0, "best_score": first[SCORE_KEY], "stale_epochs": 0}
    assert config == state.cfg.as_dict() and args == state.cfg.model_args()
    fresh = _state(demo_data, demo_spec, epochs=2)
    resume(fresh, str(tmp_path))
    assert (fresh.start_epoch, fresh.step, fresh.resumed) == (1, state.steps_per_epoch, True)
    assert fresh.best == BestEpoch.from_dict(saved.selection)
    resumed, _ = _epoch(fresh, 1)
    for key in ("train_loss", "valid_loss", "valid_auc", "step"):
        assert resumed[key] == pytest.approx(went_on[key], rel=1e-6), key
    assert fresh.best == state.best


def test_resuming_with_other_model_settings_is_refused(demo_data, demo_spec, tmp_path):
    state = _state(demo_data, demo_spec)
    write_checkpoint(state, 0, str(tmp_path))
    wider = _state(demo_data, demo_spec)
    wider.cfg = wider.cfg.model_copy(update={"model": wider.cfg.model.replace(dim=32)})
    with pytest.raises(ValueError, match=r"different \[model\]/\[task\] section .*'dim': \(16, 32\)"):
        resume(wider, str(tmp_path))


def test_checkpoints_of_earlier_versions_keep_their_epoch_selection(demo_data, demo_spec, tmp_path):
    state = _state(demo_data, demo_spec)
    state.best = BestEpoch(2, 0.75, 1)
    write_checkpoint(state, 3, str(tmp_path))
    raw = torch.load(tmp_path / "state.pt", weights_only=True)
    raw["progress"] = raw.pop("selection")  # its name before
    torch.save(raw, tmp_path / "state.pt")
    fresh = _state(demo_data, demo_spec)
    resume(fresh, str(tmp_path))
    assert fresh.best == BestEpoch(2, 0.75, 1) and fresh.start_epoch == 4
