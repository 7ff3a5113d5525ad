"""What a training worker prints per step and per epoch, by mode."""

import pytest

from deepsets.pipelines.training.progress import EpochProgress, progress_mode


def run_epoch(mode, steps=40):
    shown = EpochProgress(mode, 2, 3, steps)
    for done in range(1, steps + 1):
        shown.step(done, 1.0 / done)
    shown.end({"train_loss": 0.25, "valid_auc": 0.75})


def test_lines_every_tenth_of_the_epoch_then_the_metrics_counted_from_one(capsys):
    run_epoch("lines")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "epoch 2/3 step 4/40 loss 0.2500" and lines[9] == "epoch 2/3 step 40/40 loss 0.0250"
    assert lines[10:] == ["epoch 2/3: train_loss 0.25, valid_auc 0.75"]


def test_off_prints_nothing(capsys):
    run_epoch("off")
    assert capsys.readouterr().out == ""


def test_bar_mode_counts_steps_on_a_ray_bar_and_prints_only_the_metrics(capsys):
    shown = EpochProgress("bar", 2, 3, 3)
    for done in range(1, 4):
        shown.step(done, 0.5)
    shown.end({"train_loss": 0.25})
    assert shown.bar.n == 3 and shown.bar.total == 3 and shown.bar._closed  # Ray's driver draws it
    assert capsys.readouterr().out.splitlines()[-1] == "epoch 2/3: train_loss 0.25"


@pytest.mark.parametrize("progress, tty, mode", [(False, True, "off"), (True, True, "bar"), (True, False, "lines")])
def test_the_mode_follows_the_progress_flag_and_the_terminal(monkeypatch, progress, tty, mode):
    monkeypatch.setattr("sys.stdout.isatty", lambda: tty)
    assert progress_mode(progress) == mode


def test_row_counts_print_whole_and_metrics_to_four_digits():
    from deepsets.pipelines.training.progress import shown_value

    assert [shown_value(v) for v in (58190.0, 30000, 0.0, 0.82143, 3471.2)] == ["58190", "30000", "0", "0.8214", "3471"]
