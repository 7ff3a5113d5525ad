"""A new task kind from this file alone: Poisson regression of counts, registered with one
call (traits, loss, metrics, ablation metric), then validated by the run config, trained with
the training recipe, selected on and ablated.

Nothing outside this file knows about ``poisson``; that is the point of the test.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import Tensor

import deepsets.task_kinds as task_kinds
import deepsets.tasks as tasks
from deepsets.builders import build_model
from deepsets.model_args import ModelArgs
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.ablation.methods import CachedRows, SubsetScorer
from deepsets.pipelines.config import DataConfig, RunConfig, SchemaConfig, TrainingConfig
from deepsets.pipelines.training.loop import evaluate, train_step
from deepsets.pipelines.training.objectives import Objective
from deepsets.pipelines.training.selection import Selection, default_select, select_problem, validation_metrics
from deepsets.task_kinds import TaskTraits, task_names, task_traits
from deepsets.tasks import TaskHead, ablation_metric, register_task, task_loss
from tests.deepsets.random_batches import INFOS, random_batch


def poisson_loss(log_rate: Tensor, counts: Tensor, group=None) -> Tensor:
    """Mean Poisson negative log-likelihood (without the log(y!) constant) of (B, 1) log rates."""
    log_rate = log_rate.reshape(-1)  # (B,)
    return (log_rate.exp() - counts.reshape(-1).to(log_rate.dtype) * log_rate).mean()


def deviance(log_rate: Tensor, counts: Tensor) -> Tensor:
    """Mean Poisson deviance over the last dim of (..., N) log rates against (N,) counts."""
    y = counts.reshape(-1).double()  # (N,)
    rate = log_rate.double().exp()  # (..., N)
    term = torch.where(y > 0, y * torch.log(y.clamp(min=1e-12) / rate), torch.zeros_like(rate))  # (..., N)
    return (2 * (term - (y - rate))).mean(dim=-1)


class PoissonMetrics:
    """``loss`` and ``deviance`` over every row updated since the last reset."""

    def __init__(self, num_outputs: int) -> None:
        self.reset()

    def reset(self) -> None:
        self.log_rates, self.counts = [], []

    def update(self, logits: Tensor, target: Tensor) -> None:
        self.log_rates.append(logits.detach().reshape(-1).double())
        self.counts.append(target.detach().reshape(-1).double())

    def compute(self) -> Dict[str, float]:
        log_rate, counts = torch.cat(self.log_rates), torch.cat(self.counts)  # (N,), (N,)
        return {"loss": float(poisson_loss(log_rate, counts)), "deviance": float(deviance(log_rate, counts))}


POISSON = TaskTraits(
    "poisson",
    metrics=("loss", "deviance"),
    select="deviance",
    lower_is_better=("loss", "deviance"),
    ablation_metric="neg_deviance",
    per_row=True,
    max_outputs=1,
)


@pytest.fixture
def poisson(monkeypatch):
    """The kind registered for one test (the tables are restored after it)."""
    monkeypatch.setattr(task_kinds, "_TASKS", task_kinds._TASKS.copy())
    monkeypatch.setattr(tasks, "_IMPLEMENTATIONS", tasks._IMPLEMENTATIONS.copy())
    register_task(
        POISSON, loss=poisson_loss, metrics=PoissonMetrics, ablation=lambda logits, y: -deviance(logits[..., 0], y)
    )
    return POISSON


FLAT = [info for info in INFOS if info.kind in ("dense", "categorical", "numeric")]  # no summarizers: quick steps


def count_batch(rows: int, seed: int):
    """Random rows whose count is 3 when ``image`` is present and 0 otherwise (Poisson draws)."""
    batch = random_batch(rows, seed=seed, infos=FLAT, presence=0.5)
    batch.labels["rate"] = 0.2 + 3.0 * batch["image"].present.float()  # (B,)
    batch.labels["count"] = torch.poisson(batch.labels["rate"], generator=torch.Generator().manual_seed(seed)).float()
    return batch


def test_a_kind_registered_here_is_a_choice_of_the_config_selection_and_head(poisson):
    assert task_names()[-1] == "poisson" and task_traits("poisson") == poisson
    assert ModelArgs(task="poisson").task == "poisson"
    with pytest.raises(ValueError, match="'two_tower' or 'poisson'"):
        ModelArgs(task="poison")
    assert validation_metrics("poisson") == ("loss", "deviance") and default_select("poisson") == "valid_deviance"
    selection = Selection.of("", 2, "poisson", 10, True)
    assert selection == Selection("valid_deviance", 2) and not selection.higher_is_better
    assert selection.score({"valid_deviance": 1.5}) == -1.5
    assert (
        select_problem("valid_auc", 0, "poisson", 10, True)
        == "a poisson run reports valid_loss, valid_deviance (or \"last\"; found 'valid_auc')"
    )
    base = dict(data=DataConfig(train="t", valid="v", label_columns=["count"]), schema=SchemaConfig(path="s.toml"))
    cfg = RunConfig(**base, task={"kind": "poisson"}, training=TrainingConfig(select="valid_deviance"))
    assert cfg.model_args().task == "poisson"
    with pytest.raises(ValidationError, match=r"num_outputs: a poisson task has exactly 1 output \(found 2\)"):
        RunConfig(**base, task={"kind": "poisson", "num_outputs": 2})
    with pytest.raises(ValueError, match="poisson task cannot have num_outputs=2"):
        TaskHead(8, "poisson", 2)
    with pytest.raises(ValueError, match="exactly when ablation_metric names one"):
        register_task(
            TaskTraits("counts", ("loss",), "loss", ablation_metric="x"), loss=poisson_loss, metrics=PoissonMetrics
        )


def test_the_registered_kind_trains_with_the_training_recipe_and_is_ablated(poisson):
    torch.manual_seed(0)
    model = build_model(FLAT, dim=16, heads=2, fusion="deepset", task="poisson")
    objective = Objective("poisson", ("count",))
    optimizer = make_optimizer(model, "adamw", 3e-2, 0.0)
    scheduler = make_scheduler(optimizer, "constant", total_steps=60, warmup_steps=0)
    held_out = [count_batch(512, seed=1000)]
    cpu = torch.device("cpu")
    before = evaluate(model, held_out, objective, cpu, None)
    for step in range(60):
        train_step(model, count_batch(64, seed=step), objective, optimizer, scheduler, cpu, None, grad_clip=1.0)
    after = evaluate(model, held_out, objective, cpu, None)
    assert set(after) == {"loss", "deviance"}  # the registered accumulator, with the declared names
    batch = held_out[0]
    best = float(deviance(batch.labels["rate"].log(), batch.labels["count"]))  # the true rates' deviance
    assert before["deviance"] > best + 1.0 and after["deviance"] < best + 0.2 and after["loss"] < before["loss"]
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert float(task_loss("poisson", out.logits, batch.labels["count"])) == pytest.approx(after["loss"], rel=1e-4)
    names = list(out.names)
    rows = CachedRows(out.modality_vectors, out.present, batch.labels["count"], np.arange(batch.num_rows), names)
    scorer = SubsetScorer(model, rows, "poisson", bootstrap=0, seed=0, every_subset=False)
    assert scorer.metric_names == ["neg_deviance"]
    assert scorer.full == pytest.approx(-after["deviance"], rel=1e-4)
    without_image = float(scorer.metric(scorer.scores(torch.tensor([[name != "image" for name in names]])))[0])
    assert without_image < scorer.full - 0.5  # image carries the signal: removing it costs deviance


def test_an_unknown_kind_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown task kind 'poisson' \\(known kinds: binary, multilabel"):
        ablation_metric("poisson", torch.zeros(1, 3, 1), torch.zeros(3))
