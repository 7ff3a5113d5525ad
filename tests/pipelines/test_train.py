"""Ray Train + MLflow end to end, on one shared Ray session (each run takes ~15 s here)."""

from __future__ import annotations

import mlflow
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.builders import build_model
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.models.checkpoint import load_checkpoint
from deepsets.pipelines.report import format_train_summary
from deepsets.pipelines.training.loop import FAIL_AT_EPOCH_ENV
from deepsets.pipelines.training.run import run_training


def config(data_dir, tmp_path, name, workers=2, epochs=2, **training):
    cfg = default_demo_config(data_dir, workers=workers)
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"dim": 32}),
            "training": cfg.training.model_copy(update={"epochs": epochs, "batch_size": 200, "lr": 3e-3, **training}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": name,
                    "storage_path": str(tmp_path / "ray"),
                    "mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db",
                }
            ),
        }
    )


def final_weights(summary):
    state, _, _, _ = load_checkpoint(summary["checkpoint"])
    return state.model


@pytest.fixture(scope="module")
def two_worker_run(ray_session, demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two")
    # batches of 100: 90 steps; with 45 (batches of 200) the AUC on 600 rows swings 0.57-0.69 by seed
    return run_training(config(demo_data, tmp, "two-workers", workers=2, epochs=3, batch_size=100), progress=False), tmp


def test_two_workers_learn_the_planted_signal(two_worker_run):
    summary, _ = two_worker_run
    assert summary["epochs_done"] == 3
    # Stated bar: 0.6. Chance is 0.5 and the standard error of an AUC on these 600 validation
    # rows is about 0.025; the planted model's own AUC is about 0.88 (3,000 rows is little data).
    assert summary["metrics"]["valid_auc"] > 0.6, {k: v for k, v in summary["metrics"].items() if k.startswith("valid")}


def test_mlflow_run_holds_params_metrics_artifacts_and_a_model(two_worker_run, demo_data):
    summary, _ = two_worker_run
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.data.params["training.epochs"] == "3" and run.data.params["model.fusion"] == "transformer"
    assert run.data.tags["deepsets.run_name"] == "two-workers" and len(run.data.tags["git_commit"]) in (40, 7)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(summary["run_id"], "train_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert len(client.get_metric_history(summary["run_id"], "valid_auc")) == 3
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"spec.json", "config.toml"} <= artifacts
    # the logged model embeds a Parquet batch exactly like the trained weights do
    mlflow.set_tracking_uri(summary["tracking_uri"])
    loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    table = pq.read_table(sorted((demo_data / "valid").glob("*.parquet"))[0]).slice(0, 64)
    predicted = loaded.predict(table.to_pandas())
    state, spec, _, args = load_checkpoint(summary["checkpoint"])
    model = build_model(spec.model_inputs(), args)
    model.load_state_dict(state.model)
    with torch.no_grad():
        expected = model.eval()(spec.transform(table)).fused
    got = torch.tensor([list(e) for e in predicted["embedding"]])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert predicted["item_id"].tolist() == table.column("item_id").to_pylist()


def test_one_and_two_workers_agree(ray_session, demo_data, tmp_path):
    """When an epoch is one global step (all 3,000 training rows), the two workers' halves make
    exactly the one worker's batch: data parallelism only splits the work. (SGD: Adam divides by
    the gradient's own scale, which blows float noise on gradient-free parameters such as the
    attention key bias up to full-size steps, so weights could not be compared.)"""
    one = run_training(
        config(demo_data, tmp_path, "one", workers=1, epochs=2, batch_size=3000, optimizer="sgd", lr=0.05),
        progress=False,
    )
    two = run_training(
        config(demo_data, tmp_path, "two", workers=2, epochs=2, batch_size=3000, optimizer="sgd", lr=0.05),
        progress=False,
    )
    # stated tolerance: float summation order differs between 1 and 2 workers
    for key in (
        "train_loss",
        "valid_loss",
        "valid_auc",
    ):  # validation: sharded over both ranks, computed over the union
        assert one["metrics"][key] == pytest.approx(two["metrics"][key], abs=1e-4), key
    for run in (one, two):  # every training row decoded and used once per epoch, none dropped
        assert run["metrics"]["train_rows_dropped"] == 0
    assert one["metrics"]["train_rows_decoded"] == 3000 and one["metrics"]["train_rows_decoded_max_worker"] == 3000
    # two shares of 1,500 rows over 600-row row groups: of the row group both shares cut, the share taking its tail
    # also decodes its head, the smaller piece (at most 300 more rows)
    assert (
        3000 <= two["metrics"]["train_rows_decoded"] <= 3300 and two["metrics"]["train_rows_decoded_max_worker"] <= 1800
    )
    a, b = final_weights(one), final_weights(two)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "ray-train"])
def test_resume_continues_the_epoch_counter(ray_session, demo_data, tmp_path, workers):
    def resumable(epochs):
        return config(demo_data, tmp_path, "resumable", workers=workers, epochs=epochs)

    first = run_training(resumable(1), progress=False)
    assert first["epochs_done"] == 1 and first["trainer"] == ("in_process" if workers == 1 else "ray_train")
    with pytest.raises(Exception, match="already exists"):
        run_training(resumable(3), progress=False)
    resumed = run_training(resumable(3), resume=True, progress=False)
    assert resumed["epochs_done"] == 3 and resumed["run_id"] == first["run_id"]
    client = mlflow.tracking.MlflowClient(resumed["tracking_uri"])
    assert [m.step for m in client.get_metric_history(resumed["run_id"], "train_loss")] == [0, 1, 2]
    assert [m.value for m in client.get_metric_history(resumed["run_id"], "resumed_at_epoch")] == [1.0]
    # resuming a finished run trains nothing more and logs no second copy of its model
    again = run_training(resumable(3), resume=True, progress=False)
    assert again["model_uri"] == resumed["model_uri"] and again["epochs_done"] == 3
    assert resumed["epochs_this_run"] == 2 and again["epochs_this_run"] == 0
    assert format_train_summary(again).startswith(
        "run resumable: nothing left to train, its 3 epochs were done before this --resume"
    )
    experiment = client.get_run(first["run_id"]).info.experiment_id
    logged = client.search_logged_models(
        experiment_ids=[experiment], filter_string=f"source_run_id = '{first['run_id']}'"
    )
    assert len(logged) == 2  # the 1-epoch run's and the 3-epoch run's


def test_worker_failure_is_recovered_from_the_checkpoint(ray_session, demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_AT_EPOCH_ENV, "0")
    cfg = config(demo_data, tmp_path, "failing", epochs=2)
    cfg = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(update={"max_failures": 1})})
    summary = run_training(cfg, progress=False)
    assert summary["epochs_done"] == 2
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    assert [m.value for m in client.get_metric_history(summary["run_id"], "resumed_at_epoch")] == [1.0]
    assert [m.step for m in client.get_metric_history(summary["run_id"], "train_loss")] == [0, 1]


def test_failure_beyond_max_failures_is_reported(ray_session, demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_AT_EPOCH_ENV, "0")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_training(config(demo_data, tmp_path, "failing-hard", epochs=2), progress=False)


def test_bad_label_column_or_too_little_data_fails_before_ray(demo_data, tmp_path):
    from deepsets.features.errors import DataError

    cfg = config(demo_data, tmp_path, "bad-label")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"label_columns": ("clickd",)})})
    with pytest.raises(DataError, match="column 'clickd': column missing"):
        run_training(cfg, progress=False)
    small = config(demo_data, tmp_path, "too-small", batch_size=4000)
    with pytest.raises(DataError, match="only 3000 training rows: fewer than one global batch"):
        run_training(small, progress=False)


def with_a_short_image_vector(source_dir, out_dir, row=5):
    """``source_dir``'s files copied to ``out_dir``, the first file's ``image`` vector at ``row`` one float short."""
    import pyarrow as pa

    out_dir.mkdir(parents=True)
    for i, path in enumerate(sorted(source_dir.glob("*.parquet"))):
        table = pq.read_table(path)
        if i == 0:
            image = table.column("image").to_pylist()
            image[row] = image[row][:-1]
            table = table.set_column(
                table.schema.get_field_index("image"), "image", pa.array(image, pa.list_(pa.float32()))
            )
        pq.write_table(table, out_dir / path.name)
    return out_dir


def test_a_bad_value_in_data_the_run_did_not_fit_on_fails_before_ray(demo_data, demo_spec, tmp_path):
    """A given data.spec (training files never read by a fit) and the validation files: a bad
    vector is one DataError naming file, column and row, not a traceback from a Ray worker."""
    from deepsets.features.errors import DataError

    demo_spec.save(tmp_path / "spec.json")
    bad_train = with_a_short_image_vector(demo_data / "train", tmp_path / "bad-train")
    cfg = config(demo_data, tmp_path, "bad-train")
    given = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"train": (str(bad_train),), "spec": str(tmp_path / "spec.json")})}
    )
    with pytest.raises(
        DataError, match=r"bad-train/part-.*column 'image', row 5: expected 256 floats per vector, found 255"
    ):
        run_training(given, progress=False)
    bad_valid = with_a_short_image_vector(demo_data / "valid", tmp_path / "bad-valid", row=7)
    fitted = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"valid": (str(bad_valid),)}),
            "tracking": cfg.tracking.model_copy(update={"run_name": "bad-valid"}),
        }
    )
    with pytest.raises(
        DataError, match=r"bad-valid/.*column 'image', row 7: expected 256 floats per vector, found 255"
    ):
        run_training(fitted, progress=False)


def test_missing_data_paths_are_named_by_their_config_key(demo_data, tmp_path):
    from deepsets.features.errors import DataError

    cfg = config(demo_data, tmp_path, "missing-paths")
    missing = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(
                update={"valid": (str(tmp_path / "gone"),), "spec": str(tmp_path / "spec.json")}
            )
        }
    )
    with pytest.raises(DataError) as info:
        run_training(missing, progress=False)
    assert (
        str(info.value)
        == f"data.valid: input '{tmp_path / 'gone'}' does not exist; data.spec: no spec file at '{tmp_path / 'spec.json'}'"
    )


def test_resume_with_a_different_model_is_refused_before_ray(ray_session, demo_data, tmp_path):
    from deepsets.pipelines.errors import JobError

    run_training(config(demo_data, tmp_path, "fixed-model", workers=1, epochs=1), progress=False)
    changed = config(demo_data, tmp_path, "fixed-model", workers=1, epochs=2)
    changed = changed.model_copy(update={"model": changed.model.model_copy(update={"dim": 16})})
    with pytest.raises(JobError, match=r"different model than its checkpoint \(dim: 32 -> 16\)"):
        run_training(changed, resume=True, progress=False)


def shuffled_labels(data_dir, out_dir, seed=0):
    """The demo rows with ``clicked`` permuted: nothing to learn, so validation loss is lowest
    early and rises as the model memorizes the training rows."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    for split in ("train", "valid"):
        (out_dir / split).mkdir(parents=True)
        for path in sorted((data_dir / split).glob("*.parquet")):
            table = pq.read_table(path)
            i = table.schema.get_field_index("clicked")
            table = table.set_column(i, "clicked", pa.array(rng.permutation(table.column("clicked").to_numpy())))
            pq.write_table(table, out_dir / split / path.name)
    (out_dir / "schema.toml").write_text((data_dir / "schema.toml").read_text())
    return out_dir


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "ray-train"])
def test_the_best_epoch_is_the_model_and_patience_stops_early(ray_session, demo_data, tmp_path, workers):
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.pipelines.models.pyfunc import load_deepsets_model
    from deepsets.pipelines.training.loop import evaluate
    from deepsets.pipelines.training.objectives import Objective

    data = shuffled_labels(demo_data, tmp_path / "noise")
    cfg = config(
        data, tmp_path, "select", workers=workers, epochs=6, batch_size=100, lr=1e-2, select="valid_loss", patience=1
    )
    summary = run_training(cfg, progress=False)
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    losses = [m.value for m in sorted(client.get_metric_history(summary["run_id"], "valid_loss"), key=lambda m: m.step)]
    best = min(range(len(losses)), key=losses.__getitem__)
    ran = summary["epochs_done"]
    assert len(losses) == ran < 6 and summary["selected"]["stopped_early"], (
        losses
    )  # patience 1: one epoch without improvement
    assert best == ran - 2 and summary["selected"] == {
        "epoch": best + 1,
        "metric": "valid_loss",
        "value": losses[best],
        "stopped_early": True,
    }
    assert (
        summary["metrics"]["valid_loss"] == losses[best] and summary["metrics"]["epoch"] == best + 1
    )  # counted from 1 everywhere
    # the logged model is the best epoch's, carries that epoch's metrics, and reproduces its loss
    model, spec, _ = load_deepsets_model(summary["model_uri"])
    valid = ParquetBatchReader(spec, data / "valid", batch_size=1024, label_columns=["clicked"])
    again = evaluate(model, valid, Objective("binary", ("clicked",)), torch.device("cpu"))["loss"]
    assert again == pytest.approx(losses[best], abs=1e-5)
    logged = mlflow.get_logged_model(summary["model_uri"].removeprefix("models:/"))
    assert {(m.key, m.step, m.value) for m in logged.metrics if m.key == "valid_loss"} == {
        ("valid_loss", best, losses[best])
    }
    assert client.get_run(summary["run_id"]).data.tags["deepsets.selected_epoch"] == str(best + 1)
    kept = [p for p in (tmp_path / "ray" / "select").glob("checkpoint_*") if p.is_dir()]
    assert len(kept) == 2  # the best and the last are kept (by Ray Train, or as Ray Train keeps them in process)
    assert str(tmp_path / "ray" / "select" / summary["checkpoint"].rsplit("/", 1)[-1]) in {str(p) for p in kept}
    # resuming a run that stopped early trains nothing more and keeps its model
    resumed = run_training(cfg, resume=True, progress=False)
    assert (
        resumed["epochs_this_run"] == 0
        and resumed["epochs_done"] == ran
        and resumed["model_uri"] == summary["model_uri"]
    )
    assert "(it had stopped early: training.patience)" in format_train_summary(resumed).splitlines()[0]
    assert [m.value for m in client.get_metric_history(summary["run_id"], "resumed_at_epoch")] == [float(ran)]


def test_gpus_asked_of_a_cluster_without_them_fail_at_once_naming_the_setting(ray_session, demo_data, tmp_path):
    """Ray would wait for GPUs forever; the run stops before it opens an MLflow run."""
    from deepsets.pipelines.errors import JobError

    cfg = config(demo_data, tmp_path, "wants-gpus", workers=2)
    cfg = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(update={"use_gpu": True})})
    with pytest.raises(
        JobError, match=r"scaling.use_gpu = true with scaling.workers = 2 needs 2 GPU\(s\), but the Ray cluster has 0"
    ):
        run_training(cfg, progress=False)
    assert not (tmp_path / "mlflow.db").exists()
