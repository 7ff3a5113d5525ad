"""What each Ray Train worker runs, as a recipe (:func:`train_worker`): set up (model,
optimizer, schedule, resume from the last checkpoint), then per epoch train on its share of the
rows, validate its share (rank 0 computes the metrics), select the epoch, checkpoint and report.
The steps and the state they share are in :mod:`deepsets.pipelines.training.worker`; the step
on one batch (:func:`train_step`) is here.

Data sharding: every epoch the row groups of the training files are put in a seeded random
order, the sequence is cut into one contiguous share per worker (:mod:`deepsets.features.shards`), and
each worker decodes only its share, in local batches of ``training.batch_size / workers`` rows
(the rows inside each decoded chunk shuffled too). So every row is read once per epoch across
the workers; the few rows that would make the shares or the last batch uneven are dropped and
counted, so every rank takes the same steps. A global step (the gradient averaged over ranks)
sees the same rows as one worker would only when an epoch is one step. Validation is sharded
the same way, and rank 0 computes its metrics over the union (:mod:`deepsets.pipelines.training.validation`).

Task kinds (:mod:`deepsets.pipelines.training.objectives`): listwise / pairwise shuffle whole query groups, so a
group stays together unless a batch edge (or the split across workers) cuts it into two shorter
lists; two_tower takes its in-batch negatives from each worker's share of the global batch.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

from deepsets.batch import FeatureBatch
from deepsets.features.prefetch import prefetch
from deepsets.pipelines.training.objectives import Objective
from deepsets.pipelines.training.progress import EpochProgress
from deepsets.pipelines.training.selection import SCORE_KEY
from deepsets.pipelines.training.validation import autocast, evaluate_sharded
from deepsets.pipelines.training.worker import (
    WorkerState,
    across_ranks,
    checkpoint_and_report,
    epoch_reader,
    select_epoch,
    set_up,
    validate,
)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


FAIL_AT_EPOCH_ENV = "DEEPSETS_FAIL_AT_EPOCH"
"""Testing knob, read by the driver: rank 0 raises after checkpointing this epoch, on a run's
first attempt, so failure recovery (``scaling.max_failures``) can be exercised."""


def train_step(
    model: nn.Module,
    batch: FeatureBatch,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    grad_clip: float = 0.0,
) -> float:
    """One optimizer step on ``batch``; moves it to ``device``; returns the loss.

    Args:
        objective: the task kind's loss (and the batch columns it reads).
        amp_dtype: autocast dtype (bf16 on GPUs), or None for full precision.
        grad_clip: max gradient norm, 0 = no clipping.
    """
    batch = batch.to(device, non_blocking=True)
    with autocast(device, amp_dtype):
        loss = objective.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def evaluate(model: nn.Module, batches, objective: Objective, device: torch.device, amp_dtype=None) -> Dict[str, float]:
    """The objective's metrics over every batch, in this process (no gradient, eval mode, restored after)."""
    return evaluate_sharded(model, batches, objective, device, rank=0, world=1, amp_dtype=amp_dtype)


def host_batches(reader: Iterable[FeatureBatch], device: torch.device) -> Iterable[FeatureBatch]:
    """The reader's batches; for a CUDA device pinned in page-locked memory by a background
    thread, so ``batch.to(device, non_blocking=True)`` in :func:`train_step` copies while the
    GPU still computes the previous step. On a CPU device, the reader itself."""
    if device.type != "cuda":
        return reader
    return prefetch(batch.pin_memory() for batch in reader)


def train_worker(loop_config: dict) -> None:
    """Entry point of every Ray Train worker (``TorchTrainer(train_loop_per_worker=...)``).

    Args:
        loop_config: {"config": the checked RunConfig, "spec": FeatureSpec.to_dict(),
            "mlflow": {"uri": ..., "run_id": ...}, "progress_mode": one of
            ``deepsets.pipelines.training.progress.MODES``, "fail_at_epoch": int or None,
            "item_counts": two_tower item popularity or None}.
    """
    train_epochs(set_up(loop_config), checkpoint_and_report)


def train_epochs(state: WorkerState, report: Callable[[WorkerState, int, Dict[str, float]], None]) -> None:
    """The epochs left to train: per epoch train, validate, select, then ``report(state, epoch,
    metrics)`` checkpoints the epoch (Ray Train's report, or a folder in
    :mod:`deepsets.pipelines.training.in_process`); stops early when the patience is spent.

    Raises:
        TrainingDiverged: when the loss of a step is NaN or infinite.
    """
    for epoch in range(state.start_epoch, state.end_epoch):
        shown = EpochProgress(state.progress_mode, epoch + 1, state.cfg.training.epochs, state.steps_per_epoch)
        metrics = train_one_epoch(state, epoch, shown)
        metrics.update(validate(state))
        stop = select_epoch(state, epoch, metrics)
        report(state, epoch, metrics)
        epoch_metrics = {k: v for k, v in metrics.items() if k not in ("epoch", "step", SCORE_KEY)}
        shown.end(epoch_metrics)
        if state.tracker is not None:
            state.tracker.log(epoch_metrics, step=epoch)
        if state.rank == 0 and not state.resumed and state.fail_at_epoch == epoch:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_AT_EPOCH_ENV})")
        if stop:
            if state.progress_mode != "off":  # rank 0's mode; "off" on every other rank
                print(
                    f"stopping early after epoch {epoch + 1}: {state.selection.metric} has not improved for "
                    f"{state.selection.patience} epoch(s) (best: epoch {state.best.epoch + 1})",
                    flush=True,
                )
            break


def train_one_epoch(state: WorkerState, epoch: int, shown: EpochProgress) -> Dict[str, float]:
    """One pass over this worker's share of the training rows, an optimizer step per batch.

    Returns:
        The epoch's training metrics over every rank: ``epoch``, ``step``, ``train_loss``,
        ``train_rows_per_s``, rows dropped and decoded, and ``ray_nodes``.

    Raises:
        TrainingDiverged: when the loss of a step is NaN or infinite.
    """
    t = state.cfg.training
    # Dropout masks differ per rank and are fixed per (seed, epoch, rank), so a resumed run
    # draws exactly what the uninterrupted run would have (the data order is seeded per epoch too).
    torch.manual_seed(t.seed + 1 + state.rank + 10_007 * epoch)
    if state.negatives is not None:  # the items drawn follow the seed, per epoch and rank
        state.negatives.reseed(t.seed * 1_000_003 + 10_007 * epoch + state.rank)
    started, loss_sum, steps, rows = time.perf_counter(), 0.0, 0, 0
    reader = epoch_reader(state, epoch)
    for local in host_batches(reader, state.device):
        loss = train_step(
            state.model,
            local,
            state.objective,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            device=state.device,
            amp_dtype=state.amp_dtype,
            grad_clip=t.grad_clip,
        )
        steps, rows, state.step = steps + 1, rows + local.num_rows, state.step + 1
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss is {loss} at epoch {epoch + 1}/{t.epochs}, step {steps} of the epoch "
                f"(rank {state.rank}): training diverged; try a lower training.lr (now {t.lr:g}) or "
                f"training.grad_clip, and check the labels"
            )
        loss_sum += loss
        shown.step(steps, loss_sum / steps)
    seconds = time.perf_counter() - started
    loss_total, steps_total, dropped, decoded = across_ranks(
        state, [loss_sum, steps, reader.rows_dropped, reader.rows_decoded]
    )
    (most_decoded,) = across_ranks(state, [reader.rows_decoded], op="max")
    return {
        "epoch": epoch,
        "step": state.step,
        "train_loss": loss_total / max(steps_total, 1),
        "train_rows_per_s": rows * state.world / seconds,
        "train_rows_dropped": dropped,
        "train_rows_decoded": decoded,
        "train_rows_decoded_max_worker": most_decoded,
        "ray_nodes": state.nodes,
    }
