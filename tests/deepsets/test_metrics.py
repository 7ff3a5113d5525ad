"""TaskMetrics against values worked out by hand on tiny inputs."""

import math

import pytest
import torch

from deepsets.metrics import TaskMetrics
from deepsets.task_kinds import task_traits


def col(*values):
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)  # (B, 1)


def test_binary_auc_and_log_loss_over_two_updates():
    # scores 0.1 0.4 (negatives), 0.35 0.8 (positives): of the 4 (pos, neg) pairs only
    # (0.35, 0.4) is ranked wrong -> AUC = 3/4. Split across updates: ranking is over the set.
    m = TaskMetrics("binary", 1)
    m.update(col(0.1, 0.35), torch.tensor([0.0, 1.0]))
    m.update(col(0.4, 0.8), torch.tensor([0.0, 1.0]))
    out = m.compute()
    assert set(out) == set(task_traits("binary").metrics)
    assert out["auc"] == pytest.approx(0.75)
    # log loss: logit 0 with label 1 costs ln 2; logit ln 3 (p = 3/4) with label 0 costs ln 4.
    m.reset()
    m.update(col(0.0), torch.tensor([1.0]))
    m.update(col(math.log(3.0)), torch.tensor([[0.0]]))  # (B, 1) targets work too
    out = m.compute()
    assert out["log_loss"] == pytest.approx(1.5 * math.log(2.0), abs=1e-6)
    assert out["loss"] == pytest.approx(out["log_loss"])
    assert out["auc"] == pytest.approx(0.0)  # the negative (logit ln 3) outranks the positive (0)


def test_binary_auc_single_class_is_nan():
    m = TaskMetrics("binary", 1)
    m.update(col(0.1, 0.9), torch.tensor([1.0, 1.0]))
    out = m.compute()
    assert math.isnan(out["auc"]) and out["log_loss"] > 0


def test_multilabel_f1_and_map():
    # predicted positive where logit > 0 (sigmoid > 0.5)
    logits = torch.tensor([[2.0, -1.0], [1.0, 2.0], [-2.0, 1.0]])  # preds [[1,0],[1,1],[0,1]]
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    # label 0: TP 1 FP 1 FN 1 -> F1 1/2;  label 1: TP 2 FP 0 FN 1 -> F1 4/5
    # micro: TP 3 FP 1 FN 2 -> 6/9;  macro: (1/2 + 4/5) / 2 = 0.65
    # AP label 0: ranking pos, neg, pos -> (1/1 + 2/3) / 2 = 5/6;  label 1: all positive -> 1
    m = TaskMetrics("multilabel", 2)
    m.update(logits[:2], target[:2])
    m.update(logits[2:], target[2:])
    out = m.compute()
    assert set(out) == set(task_traits("multilabel").metrics)
    assert out["f1_micro"] == pytest.approx(2 / 3)
    assert out["f1_macro"] == pytest.approx(0.65)
    assert out["map"] == pytest.approx(11 / 12)
    bce = lambda z, y: math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z))  # noqa: E731
    expected = sum(bce(z, y) for z, y in zip(logits.flatten().tolist(), target.flatten().tolist())) / 6
    assert out["loss"] == pytest.approx(expected, abs=1e-6)


def test_multilabel_map_leaves_out_labels_without_positives():
    logits = torch.tensor([[2.0, -1.0, 0.3], [1.0, 2.0, -0.3], [-2.0, 1.0, 0.1]])
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # label 2: no positive
    m = TaskMetrics("multilabel", 3)
    m.update(logits, target)
    assert m.compute()["map"] == pytest.approx(11 / 12)
    m.reset()
    m.update(logits, torch.zeros(3, 3))
    assert math.isnan(m.compute()["map"])


def test_multiclass_accuracy_and_cross_entropy():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    target = torch.tensor([0.0, 1.0, 2.0, 1.0])  # float class ids, as labels come from Parquet
    m = TaskMetrics("multiclass", 3)
    m.update(logits, target)
    out = m.compute()
    assert set(out) == set(task_traits("multiclass").metrics)
    assert out["accuracy"] == pytest.approx(0.75)
    e2 = math.exp(2.0)
    # right rows: -log(e^2 / (e^2 + 2)); the wrong row: -log(1 / (e^2 + 2))
    assert out["loss"] == pytest.approx((3 * math.log1p(2 / e2) + math.log(e2 + 2)) / 4, abs=1e-6)


def test_regression_rmse():
    m = TaskMetrics("regression", 1)
    m.update(col(1.0, 2.0), torch.tensor([1.0, 2.0]))
    m.update(col(3.0, 4.0), torch.tensor([3.0, 6.0]))  # squared errors 0 0 0 4 -> MSE 1
    out = m.compute()
    assert out == {"loss": pytest.approx(1.0), "rmse": pytest.approx(1.0)}
    two = TaskMetrics("regression", 2)
    two.update(torch.zeros(2, 2), torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # MSE 25/4
    assert two.compute()["rmse"] == pytest.approx(2.5)


@pytest.mark.parametrize("kind,k", [("binary", 1), ("multilabel", 2), ("multiclass", 3), ("regression", 1)])
def test_compute_without_rows_is_a_clear_error(kind, k):
    m = TaskMetrics(kind, k)
    with pytest.raises(ValueError, match="no rows"):
        m.compute()
    m.update(torch.zeros(0, k), torch.zeros(0, k) if kind in ("multilabel", "regression") else torch.zeros(0))
    with pytest.raises(ValueError, match="no rows"):
        m.compute()


def test_reset_forgets_everything():
    m = TaskMetrics("binary", 1)
    m.update(col(5.0, -5.0), torch.tensor([0.0, 1.0]))  # all wrong
    assert m.compute()["auc"] == pytest.approx(0.0)
    m.reset()
    m.update(col(-5.0, 5.0), torch.tensor([0.0, 1.0]))
    assert m.compute()["auc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kind,k,logits,target,match",
    [
        ("binary", 1, torch.zeros(3, 2), torch.zeros(3), "logits must be"),
        ("binary", 1, torch.zeros(3, 1), torch.zeros(4), "target must be"),
        ("binary", 1, torch.zeros(2, 1), torch.tensor([0.0, 2.0]), "0 or 1"),
        ("multilabel", 2, torch.zeros(3, 2), torch.zeros(3), "target must be"),
        ("multiclass", 3, torch.zeros(2, 3), torch.tensor([0.0, 3.0]), r"in \[0, 3\)"),
        ("multiclass", 3, torch.zeros(2, 3), torch.tensor([0.0, 0.5]), "class ids"),
        ("regression", 2, torch.zeros(2, 2), torch.zeros(2), "target must be"),
    ],
)
def test_bad_shapes_and_values(kind, k, logits, target, match):
    with pytest.raises(ValueError, match=match):
        TaskMetrics(kind, k).update(logits, target)


@pytest.mark.parametrize(
    "kind,k", [("nope", 1), ("binary", 2), ("multiclass", 1), ("multilabel", 1), ("regression", 0)]
)
def test_bad_construction(kind, k):
    with pytest.raises(ValueError):
        TaskMetrics(kind, k)
