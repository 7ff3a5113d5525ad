"""The state a training worker's steps share, and the steps around its loop: set up (model,
optimizer, schedule, resume state), the epoch's reader, validate, select the epoch, checkpoint
and report. :func:`deepsets.pipelines.training.loop.train_worker` runs them in order.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import nn

from deepsets.builders import build_model
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.spec import FeatureSpec
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.models.checkpoint import TrainState, load_checkpoint, save_checkpoint
from deepsets.pipelines.training.negatives import Negatives, item_catalogue_or_none
from deepsets.pipelines.training.objectives import ItemLogQ, Objective, unwrap
from deepsets.pipelines.training.selection import SCORE_KEY, Selection
from deepsets.pipelines.training.tracking import EpochTracker
from deepsets.pipelines.training.validation import evaluate_sharded

VALID_BATCH_SIZE = 1024
"""Rows per validation batch (each rank's share of the validation files)."""


@dataclass
class BestEpoch:
    """Epoch selection so far (``training.select`` and ``training.patience``), kept in every
    checkpoint so that a resumed run selects and stops as the uninterrupted one would.

    Attributes:
        epoch: the best epoch so far (counted from 0), -1 before the first scored epoch.
        score: its selection score (higher is better).
        stale_epochs: epochs since it without an improvement.
    """

    epoch: int = -1
    score: float = float("-inf")
    stale_epochs: int = 0

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "BestEpoch":
        """From :meth:`to_dict` (empty in checkpoints written before epoch selection existed)."""
        return cls(saved.get("best_epoch", -1), saved.get("best_score", float("-inf")), saved.get("stale_epochs", 0))

    def to_dict(self) -> Dict[str, Any]:
        return {"best_epoch": self.epoch, "best_score": self.score, "stale_epochs": self.stale_epochs}

    def record(self, epoch: int, score: float) -> None:
        """Epoch ``epoch`` scored ``score``: the new best, or one more stale epoch."""
        if self.epoch < 0 or score > self.score:
            self.epoch, self.score, self.stale_epochs = epoch, score, 0
        else:
            self.stale_epochs += 1

    def patience_spent(self, patience: int) -> bool:
        """True when ``patience`` (0 = never stop) epochs have passed without an improvement."""
        return bool(patience) and self.stale_epochs >= patience


@dataclass
class WorkerState:
    """What the steps of one training worker share.

    Attributes:
        cfg: the run config, checked once by the driver (its ``model_args()`` included).
        spec: the fitted feature spec.
        rank: this worker's rank; ``world``: how many workers train.
        device: where the model and batches live; ``amp_dtype``: bf16 autocast on GPUs, else None.
        model: the model as Ray Train prepared it (wrapped for data parallel when world > 1).
        optimizer: its optimizer; ``scheduler``: the learning-rate schedule, stepped per batch.
        objective: the task kind's loss and metrics.
        negatives: two_tower mixed or catalogue negatives (None for in-batch ones).
        local_batch_size: rows per step on this worker (``training.batch_size / world``).
        steps_per_epoch: optimizer steps per epoch (the schedule's and progress bar's unit).
        selection: which metric selects the kept epoch, and the patience.
        best: epoch selection so far.
        step: optimizer steps taken so far, over every epoch.
        start_epoch: the first epoch to train (after the checkpoint resumed from);
            ``end_epoch``: one past the last.
        resumed: this attempt continues from a checkpoint.
        tracker: rank 0's MLflow logger (None on the other ranks).
        progress_mode: how rank 0 shows its progress (``deepsets.pipelines.training.progress.MODES``;
            ``off`` on the other ranks).
        nodes: how many Ray nodes the workers run on.
        fail_at_epoch: testing knob: rank 0 raises after checkpointing this epoch on a first attempt.
    """

    cfg: RunConfig
    spec: FeatureSpec
    rank: int
    world: int
    device: torch.device
    amp_dtype: Optional[torch.dtype]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Objective
    negatives: Optional[Negatives]
    local_batch_size: int
    steps_per_epoch: int
    selection: Selection
    best: BestEpoch = field(default_factory=BestEpoch)
    step: int = 0
    start_epoch: int = 0
    end_epoch: int = 0
    resumed: bool = False
    tracker: Optional[EpochTracker] = None
    progress_mode: str = "off"
    nodes: int = 1
    fail_at_epoch: Optional[int] = None
    saved_config: Dict[str, Any] = field(default_factory=dict)
    """``cfg.as_dict()``: the run config every checkpoint keeps."""


def set_up(loop_config: dict) -> WorkerState:
    """This Ray Train worker's state: :func:`build_state`, resumed from Ray Train's checkpoint
    when there is one, with the epochs left to train.

    Args:
        loop_config: what the driver sends every worker (see
            :func:`deepsets.pipelines.training.loop.train_worker`).

    Raises:
        ValueError: when the checkpoint resumed from has other model settings.
    """
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    state = build_state(
        loop_config,
        rank=context.get_world_rank(),
        world=context.get_world_size(),
        device=ray.train.torch.get_device(),
        prepare_model=ray.train.torch.prepare_model,
    )
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            resume(state, directory)
    return ready(state, loop_config, nodes=_ray_nodes(state.world))


def ready(state: WorkerState, loop_config: dict, nodes: int) -> WorkerState:
    """After :func:`build_state` (and :func:`resume`): the epochs left to train, rank 0's
    MLflow tracker and progress, the model in training mode.

    Args:
        nodes: how many Ray nodes the workers run on (1 in process).
    """
    # a run that had stopped early (training.patience) has nothing left to train when resumed
    stopped = state.resumed and state.best.patience_spent(state.selection.patience)
    state.end_epoch = state.start_epoch if stopped else state.cfg.training.epochs
    if state.rank == 0:
        state.tracker = EpochTracker(loop_config.get("mlflow"))
        state.progress_mode = loop_config.get("progress_mode", "lines")
        if state.resumed:
            state.tracker.log({"resumed_at_epoch": state.start_epoch}, step=state.start_epoch)
    state.nodes = nodes
    state.model.train()
    return state


def build_state(
    loop_config: dict, *, rank: int, world: int, device: torch.device, prepare_model: Callable[[nn.Module], nn.Module]
) -> WorkerState:
    """The model (seeded by ``training.seed``, then ``prepare_model``-ed), its optimizer and
    schedule, and the objective, for worker ``rank`` of ``world``; nothing resumed yet."""
    cfg: RunConfig = loop_config["config"]
    spec = FeatureSpec.from_dict(loop_config["spec"])
    t = cfg.training
    negatives = None
    if cfg.model.task == "two_tower" and cfg.task.negatives != "in_batch":
        negatives = Negatives(
            cfg.task.negatives, item_catalogue_or_none(cfg, spec), cfg.task.num_negatives, cfg.task.refresh_steps
        )
    popularity = loop_config.get("item_counts")
    item_log_q = ItemLogQ(popularity["ids"], popularity["counts"]) if popularity else None
    objective = Objective.from_config(cfg, item_log_q, negatives)
    torch.manual_seed(t.seed)
    model = prepare_model(build_model(spec.model_inputs(), cfg.model_args()))
    optimizer = make_optimizer(model, t.optimizer, t.lr, t.weight_decay)
    local_batch_size = t.batch_size // world
    steps_per_epoch = max(1, ParquetBatchReader(spec, cfg.data.train).total_rows() // world // local_batch_size)
    return WorkerState(
        cfg=cfg,
        spec=spec,
        rank=rank,
        world=world,
        device=device,
        amp_dtype=torch.bfloat16 if cfg.scaling.use_gpu else None,
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, t.schedule, steps_per_epoch * t.epochs, t.warmup_steps),
        objective=objective,
        negatives=negatives,
        local_batch_size=local_batch_size,
        steps_per_epoch=steps_per_epoch,
        selection=Selection.of(t.select, t.patience, cfg.model.task, cfg.task.k, bool(cfg.data.valid)),
        fail_at_epoch=loop_config.get("fail_at_epoch"),
        saved_config=cfg.as_dict(),
    )


def resume(state: WorkerState, directory: str) -> None:
    """Load the checkpoint in ``directory`` into ``state``: weights, optimizer, schedule, the
    step and epoch reached, and the epoch selection so far.

    Raises:
        ValueError: when the checkpoint's model settings differ from the config's.
    """
    saved, _, _, saved_args = load_checkpoint(directory)
    changed = saved_args.differences(state.cfg.model_args())
    if changed:
        raise ValueError(
            f"cannot resume with a different [model]/[task] section than the checkpoint (checkpoint -> now: {changed})"
        )
    unwrap(state.model).load_state_dict(saved.model)
    state.optimizer.load_state_dict(saved.optimizer)
    state.scheduler.load_state_dict(saved.scheduler)
    state.start_epoch, state.step, state.resumed = saved.epoch + 1, saved.step, True
    state.best = BestEpoch.from_dict(saved.selection)


def epoch_reader(state: WorkerState, epoch: int) -> ParquetBatchReader:
    """This worker's share of the training rows for ``epoch``, in a seeded order (every epoch
    its own), in batches of ``local_batch_size`` rows, the uneven remainder dropped."""
    cfg = state.cfg
    return ParquetBatchReader(
        state.spec,
        cfg.data.train,
        batch_size=state.local_batch_size,
        label_columns=list(cfg.data.label_columns),
        drop_last=True,
        shard=(state.rank, state.world),
        shuffle_seed=cfg.training.seed * 100_003 + epoch,
        key_columns=state.objective.key_columns(),
        group_column=cfg.data.group_column,
    )


def validate(state: WorkerState) -> Dict[str, float]:
    """``valid_<metric>`` over the validation rows (empty without ``data.valid``): every rank
    evaluates its share, rank 0 gets the metrics over the union (the other ranks an empty dict)."""
    cfg = state.cfg
    if not cfg.data.valid:
        return {}
    rows = ParquetBatchReader(
        state.spec,
        cfg.data.valid,
        batch_size=VALID_BATCH_SIZE,
        label_columns=list(cfg.data.label_columns),
        key_columns=state.objective.key_columns(),
        shard=(state.rank, state.world),
        equal_shards=False,
    )
    found = evaluate_sharded(
        unwrap(state.model),
        rows,
        state.objective,
        state.device,
        rank=state.rank,
        world=state.world,
        amp_dtype=state.amp_dtype,
    )
    return {f"valid_{k}": v for k, v in (found or {}).items()}


def select_epoch(state: WorkerState, epoch: int, metrics: Dict[str, float]) -> bool:
    """Score ``epoch`` on rank 0 (``metrics`` gains the score Ray Train keeps the best
    checkpoint by) and record it in ``state.best``.

    Returns:
        Whether to stop now (``training.patience`` spent), rank 0's decision on every rank.
    """
    if state.rank == 0 and state.selection.metric:
        metrics[SCORE_KEY] = state.selection.score(metrics)
        state.best.record(epoch, metrics[SCORE_KEY])
    return _agree_to_stop(state, state.best.patience_spent(state.selection.patience))


def checkpoint_and_report(state: WorkerState, epoch: int, metrics: Dict[str, float]) -> None:
    """Every rank reports ``metrics`` to Ray Train (a barrier); rank 0 attaches the checkpoint
    of ``epoch``."""
    import ray.train

    if state.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as directory:
        write_checkpoint(state, epoch, directory)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def write_checkpoint(state: WorkerState, epoch: int, directory: str) -> None:
    """The checkpoint of ``epoch`` into ``directory`` (which must exist): weights, optimizer,
    schedule, the step and epoch selection so far, the spec, the run config and the model settings."""
    saved = TrainState(
        unwrap(state.model).state_dict(),
        state.optimizer.state_dict(),
        state.scheduler.state_dict(),
        epoch,
        state.step,
        state.best.to_dict(),
    )
    save_checkpoint(directory, saved, state.spec, state.saved_config, state.cfg.model_args())


def across_ranks(state: WorkerState, values: List[float], op: str = "sum") -> List[float]:
    """``values`` reduced element-wise over every rank (``op``: sum or max)."""
    if state.world > 1 and torch.distributed.is_initialized():
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=state.device)  # NCCL: CUDA tensors
        torch.distributed.all_reduce(
            t, op=torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
        )
        return t.tolist()
    return [float(v) for v in values]


def _agree_to_stop(state: WorkerState, stop: bool) -> bool:
    """Rank 0's decision, for every rank (each must leave the epoch loop at the same epoch:
    ``ray.train.report`` is a barrier)."""
    if state.world > 1 and torch.distributed.is_initialized():
        flag = torch.tensor([1.0 if stop else 0.0], device=state.device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())
    return stop


def _ray_nodes(world: int) -> int:
    """How many Ray nodes the workers run on (by node id: two nodes may share an IP address)."""
    import ray

    mine = ray.get_runtime_context().get_node_id()
    if world > 1 and torch.distributed.is_initialized():
        every = [None] * world
        torch.distributed.all_gather_object(every, mine)
        return len(set(every))
    return 1
