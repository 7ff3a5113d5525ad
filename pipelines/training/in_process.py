"""Training one worker in the calling process, without Ray: the steps of a Ray Train worker.

``scaling.trainer = "in_process"`` (what ``auto`` picks for ``scaling.workers = 1`` without a
Ray address) runs the worker's recipe (:func:`deepsets.pipelines.training.loop.train_epochs`)
here, which saves Ray's start (about 10 s on 2 cores) and Ray Train's controller and worker
(about 20 s more). The checkpoints go where Ray Train puts them
(``storage_path/run_name/checkpoint_<time>``): each epoch's in a new folder, the latest and the
selected epoch's kept, so ``--resume``, ``embed`` and the logged model read them the same way.
Each also holds its epoch's metrics (``metrics.json``), which the selected epoch's summary reads.

What Ray Train adds and this does not: restarts after a failure (``scaling.max_failures``; here a
failure ends the job and ``--resume`` continues from the last epoch), several workers and nodes.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional

import torch

from deepsets.features import storage
from deepsets.pipelines.models.checkpoint import FILES
from deepsets.pipelines.training.loop import train_epochs
from deepsets.pipelines.training.resume import checkpoint_dirs, checkpoint_epoch
from deepsets.pipelines.training.worker import WorkerState, build_state, ready, resume, write_checkpoint

METRICS_FILE = "metrics.json"
"""The epoch's reported metrics, in each checkpoint this trainer writes."""


@dataclass
class Trained:
    """What an in-process run leaves: the selected epoch's checkpoint and metrics, the last epoch.

    Attributes:
        checkpoint: the selected epoch's checkpoint folder (a URI under a URI ``storage_path``).
        metrics: the metrics reported for that epoch (empty for a checkpoint written without them).
        last_epoch: the last epoch trained so far, counted from 0.
    """

    checkpoint: str
    metrics: Dict[str, float]
    last_epoch: int


class CheckpointFolder:
    """The checkpoints of one run under ``run_dir``, kept as Ray Train keeps them: the latest,
    and with a selection metric the best epoch's; older ones are deleted as new ones arrive."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.epochs: Dict[str, int] = {path: checkpoint_epoch(path) for path in checkpoint_dirs(run_dir)}

    def latest(self) -> Optional[str]:
        """The newest complete checkpoint (None before the first)."""
        return max(self.epochs, key=storage.name_of) if self.epochs else None

    def at_epoch(self, epoch: int) -> Optional[str]:
        """The newest checkpoint of ``epoch``, if one is kept."""
        found = [path for path, saved in self.epochs.items() if saved == epoch]
        return max(found, key=storage.name_of) if found else None

    def save(self, state: WorkerState, epoch: int, metrics: Dict[str, float]) -> None:
        """Checkpoint ``epoch`` with its ``metrics`` (the report step of :func:`train_epochs`),
        then delete the checkpoints neither latest nor best."""
        target = storage.join(self.run_dir, self._new_name())
        with tempfile.TemporaryDirectory() as directory:
            write_checkpoint(state, epoch, directory)
            Path(directory, METRICS_FILE).write_text(json.dumps(metrics, default=float))  # numpy scalars as numbers
            _publish(Path(directory), target)
        self.epochs[target] = epoch
        best = selected_epoch(state)
        keep = {target} if best is None else {target, self.at_epoch(best)}
        for path in [p for p in self.epochs if p not in keep]:
            storage.delete_folder(path)
            del self.epochs[path]

    def selected(self, best_epoch: Optional[int]) -> Trained:
        """The checkpoint of ``best_epoch`` (None: the latest) with its metrics."""
        latest = self.latest()
        if latest is None:
            raise RuntimeError(f"{self.run_dir} holds no complete checkpoint")
        chosen = (self.at_epoch(best_epoch) if best_epoch is not None else None) or latest
        metrics_path = storage.join(chosen, METRICS_FILE)
        metrics = json.loads(storage.read_text(metrics_path)) if storage.exists(metrics_path) else {}
        return Trained(checkpoint=chosen, metrics=metrics, last_epoch=self.epochs[latest])

    def _new_name(self) -> str:
        """``checkpoint_<local time>``, as Ray Train names them, later than every kept one."""
        name = "checkpoint_" + datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
        newest = max((storage.name_of(p) for p in self.epochs), default="")
        return name if name > newest else newest + "0"


def train_in_process(loop_config: dict, run_dir: str) -> Trained:
    """Train as one Ray Train worker would, here: resume from the run's latest checkpoint when
    there is one, train the epochs left, checkpoint each into ``run_dir``.

    Args:
        loop_config: what the driver sends a Ray Train worker (see
            :func:`deepsets.pipelines.training.loop.train_worker`).
        run_dir: the run's folder, ``tracking.storage_path/run_name``.

    Raises:
        TrainingDiverged: when the loss of a step is NaN or infinite.
        ValueError: when the checkpoint resumed from has other model settings.
    """
    cfg = loop_config["config"]
    device = torch.device("cuda" if cfg.scaling.use_gpu else "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, math.floor(cfg.scaling.cpus_per_worker)))  # as a Ray Train worker has
    try:
        state = build_state(loop_config, rank=0, world=1, device=device, prepare_model=lambda model: model.to(device))
        folder = CheckpointFolder(run_dir)
        latest = folder.latest()
        if latest is not None:
            resume(state, latest)  # a folder or a URI: the checkpoint is read through storage
        train_epochs(ready(state, loop_config, nodes=1), folder.save)
        return folder.selected(selected_epoch(state))
    finally:
        torch.set_num_threads(threads)


def selected_epoch(state: WorkerState) -> Optional[int]:
    """The best epoch so far by ``training.select``; None without a selection metric (the last is kept)."""
    return state.best.epoch if state.selection.metric and state.best.epoch >= 0 else None


def _publish(local: Path, target: str) -> None:
    """Copy a checkpoint folder to ``target`` (a folder or a URI), the files that make it complete
    (``FILES``) last: a job killed mid-copy leaves a folder that resuming ignores."""
    storage.make_dirs(target)
    names = sorted(p.name for p in local.iterdir())
    for name in [n for n in names if n not in FILES] + [n for n in FILES if n in names]:
        storage.write_bytes(storage.join(target, name), (local / name).read_bytes())
