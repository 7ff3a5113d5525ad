"""``--reuse`` of ``benchmarks.movielens.benchmark`` (``trained_runs.train_or_reuse``): a finished
run is taken as it is, a run with a complete checkpoint but no finished MLflow run is resumed,
anything else trains afresh."""

from types import SimpleNamespace

import pytest

import deepsets.pipelines.training.run as training_run
from benchmarks.movielens import trained_runs
from deepsets.pipelines.models.checkpoint import FILES

FINISHED = {"run_name": "r", "model_uri": "models:/m-1", "selected": {"epoch": 2}, "seconds": 1.0}


def config(storage_path) -> SimpleNamespace:
    return SimpleNamespace(tracking=SimpleNamespace(storage_path=str(storage_path), run_name="r"))


def write_checkpoint(storage_path, complete: bool) -> None:
    folder = storage_path / "r" / "checkpoint_2026-12-01_00-00-00.000000"
    folder.mkdir(parents=True)
    for name in FILES if complete else FILES[:1]:
        (folder / name).write_bytes(b"x")


@pytest.fixture
def calls(monkeypatch):
    """What ``run_training`` was called with (it returns a marker instead of training)."""
    seen = []
    monkeypatch.setattr(
        training_run,
        "run_training",
        lambda cfg, resume=False, progress=True: seen.append(resume) or {"trained": resume},
    )
    return seen


@pytest.mark.parametrize(
    "checkpoint, reuse, resumed",
    [
        (None, True, False),  # nothing there: a fresh run
        ("complete", True, True),  # interrupted after a checkpoint: resumed
        ("half-written", True, False),  # a crash before the first whole checkpoint: nothing to resume
        ("complete", False, False),  # without --reuse the benchmark never resumes (run_training refuses the name)
    ],
)
def test_an_unfinished_run_is_resumed_only_from_a_whole_checkpoint(
    tmp_path, monkeypatch, calls, checkpoint, reuse, resumed
):
    monkeypatch.setattr(trained_runs, "finished_run", lambda cfg: None)
    if checkpoint:
        write_checkpoint(tmp_path, complete=checkpoint == "complete")
    assert trained_runs.train_or_reuse(config(tmp_path), reuse) == {"trained": resumed}
    assert calls == [resumed]


def test_a_finished_run_is_taken_without_training(tmp_path, monkeypatch, calls):
    monkeypatch.setattr(trained_runs, "finished_run", lambda cfg: FINISHED)
    write_checkpoint(tmp_path, complete=True)
    assert trained_runs.train_or_reuse(config(tmp_path), True) == FINISHED
    assert calls == []
