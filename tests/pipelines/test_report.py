"""The summaries the CLI prints."""

from pipelines.report import format_train_summary


def summary(**metrics) -> dict:
    return {"run_name": "r", "epochs_done": 3, "seconds": 12.5, "model_uri": "models:/m-1", "checkpoint": "ckpt", "run_id": "abc",
            "tracking_uri": "sqlite:///mlflow.db", "selected": {"metric": "valid_auc", "epoch": 1}, "metrics": metrics}


def test_the_train_summary_says_how_many_rows_each_epoch_dropped():
    text = format_train_summary(summary(valid_auc=0.8123, train_loss=0.4, train_rows_dropped=184))
    lines = text.splitlines()
    assert lines[1] == "kept:       epoch 1 of 3, best valid_auc; train_loss 0.4, valid_auc 0.8123"
    assert lines[2] == ("dropped:    184 training rows per epoch, so every worker gets the same whole number of batches "
                        "(a smaller training.batch_size drops fewer)")


def test_no_dropped_line_when_nothing_was_dropped():
    assert "dropped" not in format_train_summary(summary(valid_auc=0.8, train_rows_dropped=0))
