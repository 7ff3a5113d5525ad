"""The per-worker training pieces, without Ray: the GPU code path (device argument + bf16
autocast) runs here on the CPU device, which is all CI has."""

from __future__ import annotations

import pytest
import torch

from deepsets.builders import build_model
from deepsets.fusion_heads import fusion_names
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.training.loop import evaluate, host_batches, train_step
from deepsets.pipelines.training.objectives import Objective, labels_of
from tests.deepsets.random_batches import INFOS, random_batch


@pytest.mark.parametrize("fusion", fusion_names())
def test_train_step_with_device_argument_and_bf16_autocast(fusion):
    torch.manual_seed(0)
    model = build_model(INFOS, dim=16, heads=2, fusion=fusion, fusion_layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, "adamw", 1e-2, 0.0)
    scheduler = make_scheduler(optimizer, "cosine", total_steps=4, warmup_steps=1)
    batch = random_batch(32, seed=1)
    objective = Objective("binary", ("y",))
    loss = train_step(model, batch, objective, optimizer, scheduler, torch.device("cpu"), torch.bfloat16, grad_clip=1.0)
    assert loss == loss and 0 < loss < 10  # finite
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no parameter moved"
    metrics = evaluate(model, [random_batch(64, seed=2)], objective, torch.device("cpu"), torch.bfloat16)
    assert set(metrics) == {"loss", "auc", "log_loss"}


def test_schedules():
    model = torch.nn.Linear(2, 1)
    # warm-up over 2 steps, then decay over the remaining 2: progress 0 and 0.5
    for kind, expected in (
        ("constant", [0.5, 1.0, 1.0, 1.0]),
        ("linear", [0.5, 1.0, 1.0, 0.5]),
        ("cosine", [0.5, 1.0, 1.0, 0.5]),
    ):
        optimizer = make_optimizer(model, "sgd", 1.0, 0.0)
        scheduler = make_scheduler(optimizer, kind, total_steps=4, warmup_steps=2)
        seen = []
        for _ in range(4):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert seen == pytest.approx(expected), kind


def test_labels_of_one_or_several_columns():
    batch = random_batch(4, seed=3)
    batch.labels["z"] = torch.ones(4)
    assert labels_of(batch, ["y"]).shape == (4,)
    assert labels_of(batch, ["y", "z"]).shape == (4, 2)


def test_bf16_autocast_loss_tracks_full_precision_and_weights_stay_float32():
    losses = {}
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        model = build_model(INFOS, dim=16, heads=2, fusion="transformer", fusion_layers=1)
        optimizer = make_optimizer(model, "adamw", 1e-2, 0.0)
        scheduler = make_scheduler(optimizer, "constant", total_steps=4, warmup_steps=0)
        losses[dtype] = [
            train_step(
                model,
                random_batch(64, seed=s),
                Objective("binary", ("y",)),
                optimizer,
                scheduler,
                torch.device("cpu"),
                dtype,
                grad_clip=1.0,
            )
            for s in range(3)
        ]
        assert all(
            p.dtype == torch.float32 for p in model.parameters()
        )  # autocast computes in bf16, keeps fp32 weights
    assert losses[torch.bfloat16] == pytest.approx(losses[None], abs=0.03)  # bf16 keeps ~3 significant digits


def test_host_batches_pin_for_cuda_in_a_background_thread_and_keep_order_and_errors():
    batches = [random_batch(8, seed=s) for s in range(5)]
    assert host_batches(batches, torch.device("cpu")) is batches  # CPU: the reader itself, nothing added
    pinned = list(host_batches(iter(batches), torch.device("cuda")))  # a device descriptor: no GPU needed to build it
    assert [b.num_rows for b in pinned] == [8] * 5
    for got, want in zip(pinned, batches):
        assert torch.equal(got.labels["y"], want.labels["y"])

    def failing():
        yield batches[0]
        raise ValueError("bad row 17")

    with pytest.raises(ValueError, match="bad row 17"):
        list(host_batches(failing(), torch.device("cuda")))
