"""What each Ray Train worker runs: build the model, stream its share of the epoch's rows,
train, validate its share (rank 0 computes the metrics), checkpoint every epoch, resume from
the last checkpoint.

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
import tempfile
import time
from typing import Dict, Iterable, Optional

import torch
from torch import nn

from deepsets.batch import FeatureBatch
from deepsets.builders import build_model
from deepsets.features.prefetch import prefetch
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.spec import FeatureSpec
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.models.checkpoint import TrainState, load_checkpoint, save_checkpoint
from deepsets.pipelines.training.negatives import Negatives, item_catalogue_or_none
from deepsets.pipelines.training.objectives import ItemLogQ, Objective, unwrap
from deepsets.pipelines.training.progress import EpochProgress
from deepsets.pipelines.training.selection import SCORE_KEY, Selection
from deepsets.pipelines.training.tracking import EpochTracker
from deepsets.pipelines.training.validation import autocast, evaluate_sharded


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


def _agree_to_stop(stop: bool, world: int, device: torch.device) -> bool:
    """Rank 0's decision, for every rank (each must leave the epoch loop at the same epoch:
    ``ray.train.report`` is a barrier)."""
    if world > 1 and torch.distributed.is_initialized():
        flag = torch.tensor([1.0 if stop else 0.0], device=device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())
    return stop


def _across_ranks(values: list, world: int, device: torch.device, op: str = "sum") -> list:
    """``values`` (floats) reduced element-wise over every rank (``op``: sum or max)."""
    if world > 1 and torch.distributed.is_initialized():
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)  # NCCL needs CUDA tensors
        torch.distributed.all_reduce(
            t, op=torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
        )
        return t.tolist()
    return [float(v) for v in values]


def host_batches(reader: Iterable[FeatureBatch], device: torch.device) -> Iterable[FeatureBatch]:
    """The reader's batches; for a CUDA device pinned in page-locked memory by a background
    thread, so ``batch.to(device, non_blocking=True)`` in :func:`train_step` copies while the
    GPU still computes the previous step. On a CPU device, the reader itself."""
    if device.type != "cuda":
        return reader
    return prefetch(batch.pin_memory() for batch in reader)


def _ray_nodes(world: int) -> int:
    """How many Ray nodes the workers run on (by node id: two nodes may share an IP address)."""
    import ray

    mine = ray.get_runtime_context().get_node_id()
    if world > 1 and torch.distributed.is_initialized():
        every = [None] * world
        torch.distributed.all_gather_object(every, mine)
        return len(set(every))
    return 1


def train_worker(loop_config: dict) -> None:
    """Entry point of every Ray Train worker (``TorchTrainer(train_loop_per_worker=...)``).

    Args:
        loop_config: {"config": RunConfig.as_dict(), "spec": FeatureSpec.to_dict(),
            "mlflow": {"uri": ..., "run_id": ...}, "fail_at_epoch": int or None}.
    """
    import ray.train
    import ray.train.torch

    from deepsets.pipelines.config import parse_run_config

    cfg = parse_run_config(loop_config["config"], "<run config>")
    spec = FeatureSpec.from_dict(loop_config["spec"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    t, scaling = cfg.training, cfg.scaling
    labels = list(cfg.data.label_columns)
    popularity = loop_config.get("item_counts")
    negatives = None
    if cfg.task.kind == "two_tower" and cfg.task.negatives != "in_batch":
        negatives = Negatives(
            cfg.task.negatives, item_catalogue_or_none(cfg, spec), cfg.task.num_negatives, cfg.task.refresh_steps
        )
    objective = Objective.from_config(
        cfg, ItemLogQ(popularity["ids"], popularity["counts"]) if popularity else None, negatives
    )
    torch.manual_seed(t.seed)
    args = cfg.model_args()
    model = build_model(spec.model_inputs(), args)
    device = ray.train.torch.get_device()
    amp_dtype = torch.bfloat16 if scaling.use_gpu else None
    model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(model, t.optimizer, t.lr, t.weight_decay)
    share = t.batch_size // world
    per_epoch = max(1, ParquetBatchReader(spec, cfg.data.train).total_rows() // world // share)
    scheduler = make_scheduler(optimizer, t.schedule, per_epoch * t.epochs, t.warmup_steps)
    start_epoch, step, resumed = 0, 0, False
    selection = Selection.of(t.select, t.patience, cfg.task.kind, cfg.task.k, bool(cfg.data.valid))
    progress = {"best_epoch": -1, "best_score": float("-inf"), "stale_epochs": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state, _, _, saved_args = load_checkpoint(directory)
        changed = saved_args.differences(args)
        if changed:
            raise ValueError(
                f"cannot resume with a different [model]/[task] section than the checkpoint (checkpoint -> now: {changed})"
            )
        unwrap(model).load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        start_epoch, step, resumed = state.epoch + 1, state.step, True
        progress.update(state.progress)
    # a run that had stopped early (training.patience) has nothing left to train when resumed
    end_epoch = (
        start_epoch if resumed and selection.patience and progress["stale_epochs"] >= selection.patience else t.epochs
    )
    tracker = EpochTracker(loop_config.get("mlflow")) if rank == 0 else None
    if tracker and resumed:
        tracker.log({"resumed_at_epoch": start_epoch}, step=start_epoch)
    shown_mode = loop_config.get("progress", "lines") if rank == 0 else "off"
    nodes = _ray_nodes(world)
    model.train()
    for epoch in range(start_epoch, end_epoch):
        # Dropout masks differ per rank and are fixed per (seed, epoch, rank), so a resumed run
        # draws exactly what the uninterrupted run would have (the data order is seeded per epoch too).
        torch.manual_seed(t.seed + 1 + rank + 10_007 * epoch)
        if negatives is not None:
            negatives.reseed(
                t.seed * 1_000_003 + 10_007 * epoch + rank
            )  # the items drawn follow the seed, per epoch and rank
        started, loss_sum, steps, rows = time.perf_counter(), 0.0, 0, 0
        shown = EpochProgress(shown_mode, epoch + 1, t.epochs, per_epoch)
        reader = ParquetBatchReader(
            spec,
            cfg.data.train,
            batch_size=share,
            label_columns=labels,
            drop_last=True,
            shard=(rank, world),
            shuffle_seed=t.seed * 100_003 + epoch,
            key_columns=objective.key_columns(),
            group_column=cfg.data.group_column,
        )
        for local in host_batches(reader, device):
            loss = train_step(model, local, objective, optimizer, scheduler, device, amp_dtype, t.grad_clip)
            steps, rows, step = steps + 1, rows + local.num_rows, step + 1
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss is {loss} at epoch {epoch + 1}/{t.epochs}, step {steps} of the epoch "
                    f"(rank {rank}): training diverged; try a lower training.lr (now {t.lr:g}) or "
                    f"training.grad_clip, and check the labels"
                )
            loss_sum += loss
            shown.step(steps, loss_sum / steps)
        seconds = time.perf_counter() - started
        loss_total, steps_total, dropped, decoded = _across_ranks(
            [loss_sum, steps, reader.rows_dropped, reader.rows_decoded], world, device
        )
        (most_decoded,) = _across_ranks([reader.rows_decoded], world, device, op="max")
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_total / max(steps_total, 1),
            "train_rows_per_s": rows * world / seconds,
            "train_rows_dropped": dropped,
            "train_rows_decoded": decoded,
            "train_rows_decoded_max_worker": most_decoded,
            "ray_nodes": nodes,
        }
        if cfg.data.valid:  # every rank validates its share; rank 0 gets the metrics over the union
            valid = ParquetBatchReader(
                spec,
                cfg.data.valid,
                batch_size=1024,
                label_columns=labels,
                key_columns=objective.key_columns(),
                shard=(rank, world),
                equal_shards=False,
            )
            found = evaluate_sharded(unwrap(model), valid, objective, device, rank, world, amp_dtype)
            metrics.update({f"valid_{k}": v for k, v in (found or {}).items()})
        if rank == 0 and selection.metric:
            metrics[SCORE_KEY] = selection.score(metrics)
            if progress["best_epoch"] < 0 or metrics[SCORE_KEY] > progress["best_score"]:
                progress.update(best_epoch=epoch, best_score=metrics[SCORE_KEY], stale_epochs=0)
            else:
                progress["stale_epochs"] += 1
        stop = _agree_to_stop(
            bool(selection.patience) and progress["stale_epochs"] >= selection.patience, world, device
        )
        _report(epoch, step, metrics, rank, model, optimizer, scheduler, spec, loop_config, args, progress)
        epoch_metrics = {k: v for k, v in metrics.items() if k not in ("epoch", "step", SCORE_KEY)}
        shown.end(epoch_metrics)
        if rank == 0:
            tracker.log(epoch_metrics, step=epoch)
        if rank == 0 and not resumed and loop_config.get("fail_at_epoch") == epoch:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_AT_EPOCH_ENV})")
        if stop:
            if shown_mode != "off":  # rank 0's mode; "off" on every other rank
                print(
                    f"stopping early after epoch {epoch + 1}: {selection.metric} has not improved for {selection.patience} "
                    f"epoch(s) (best: epoch {progress['best_epoch'] + 1})",
                    flush=True,
                )
            break


def _report(epoch, step, metrics, rank, model, optimizer, scheduler, spec, loop_config, args, progress) -> None:
    """Every rank reports (it is a barrier); rank 0 attaches the checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as directory:
        state = TrainState(
            unwrap(model).state_dict(), optimizer.state_dict(), scheduler.state_dict(), epoch, step, dict(progress)
        )
        save_checkpoint(directory, state, spec, loop_config["config"], args)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
