"""The summaries the CLI prints."""

from deepsets.pipelines.report import format_stats, format_train_summary


def summary(**metrics) -> dict:
    return {
        "run_name": "r",
        "epochs_done": 3,
        "seconds": 12.5,
        "model_uri": "models:/m-1",
        "checkpoint": "ckpt",
        "run_id": "abc",
        "tracking_uri": "sqlite:///mlflow.db",
        "selected": {"metric": "valid_auc", "epoch": 1},
        "metrics": metrics,
    }


def test_the_train_summary_says_how_many_rows_each_epoch_dropped():
    text = format_train_summary(summary(valid_auc=0.8123, train_loss=0.4, train_rows_dropped=184))
    lines = text.splitlines()
    assert lines[1] == "kept:       epoch 1 of 3, best valid_auc; train_loss 0.4, valid_auc 0.8123"
    assert lines[2] == (
        "dropped:    184 training rows per epoch, so every worker gets the same whole number of batches "
        "(a smaller training.batch_size drops fewer)"
    )


def test_no_dropped_line_when_nothing_was_dropped():
    assert "dropped" not in format_train_summary(summary(valid_auc=0.8, train_rows_dropped=0))


def test_the_stats_table_shows_length_columns_only_when_the_stats_have_lengths():
    fitted = {
        "history": {"presence_rate": 0.8, "length_p50": 12, "length_p99": 80, "truncated_rows": 3},
        "country": {"presence_rate": 1.0},
    }
    streamed = {"history": {"presence_rate": 0.8, "truncated_rows": 3, "dropped_elements": 40, "oov_rate": 0.01}}
    assert format_stats(fitted).splitlines()[0].split() == [
        "modality",
        "presence",
        "len",
        "p50",
        "len",
        "p99",
        "truncated",
        "dropped",
        "oov",
    ]
    assert format_stats(fitted).splitlines()[2].split() == ["history", "0.800", "12", "80", "3", "0", "0.000"]
    assert format_stats(fitted).splitlines()[1].split()[2:4] == ["-", "-"]  # country: no lengths
    assert format_stats(streamed).splitlines() == [
        f"{'modality':<14}{'presence':>9}{'truncated':>11}{'dropped':>9}{'oov':>8}",
        f"{'history':<14}{'0.800':>9}{'3':>11}{'40':>9}{'0.010':>8}",
    ]
