"""`deepsets tune`: the search space file, four tiny trials on the shared Ray session, and the
command under a time budget with its output redirected."""

from __future__ import annotations

import json
import math

import mlflow
import pytest

from deepsets.pipelines.config import load_run_config
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.tuning.orphans import orphaned_placement_groups
from deepsets.pipelines.tuning.space import parse_space


def test_space_keys_and_distributions_are_checked_together():
    space = parse_space(
        {
            "trials": 3,
            "params": {
                "training.lr": {"loguniform": [1e-4, 1e-2]},
                "model.dim": [16, 32],
                "model.dropout": {"uniform": [0.0, 0.3]},
                "training.warmup_steps": {"uniform": [0, 50]},
            },
        }
    )
    assert space.trials == 3 and [p.distribution for p in space.params] == [
        "loguniform",
        "choice",
        "uniform",
        "uniform",
    ]
    warmup = space.params[3].sample_space()
    assert all(isinstance(warmup.sample(), int) for _ in range(5))  # an integer field gets integers
    with pytest.raises(ConfigError) as info:
        parse_space(
            {
                "trails": 2,
                "grace_epochs": 0,
                "params": {
                    "model.dimension": [1],
                    "schema.path": ["a"],
                    "training.lr": {"loguniform": [0, 1]},
                    "model.dim": {"normal": [0, 1]},
                },
            }
        )
    assert info.value.problems == [
        "trails: unknown field (expected params, trials, grace_epochs, reduction_factor)",
        "grace_epochs: must be an integer >= 1 (found 0)",
        'params."model.dimension": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)',
        'params."schema.path": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)',
        'params."training.lr": loguniform needs [low, high] with low < high and low > 0 (found [0, 1])',
        "params.\"model.dim\": give a list of choices or one of {choice = [...]}, {uniform = [low, high]}, {loguniform = [low, high]} (found {'normal': [0, 1]})",
    ]


def test_four_trials_asha_a_table_and_a_best_config(ray_session, demo_data, tmp_path, monkeypatch, capsys):
    from deepsets.pipelines.tuning.job import run_tune

    monkeypatch.chdir(tmp_path)
    cfg = default_demo_config(demo_data, workers=1)
    text = (
        cfg.to_toml()
        .replace("dim = 64", "dim = 8")
        .replace("epochs = 3", "epochs = 2")
        .replace("batch_size = 512", "batch_size = 200")
    )
    (tmp_path / "run.toml").write_text(text)
    (tmp_path / "space.toml").write_text(
        'trials = 4\ngrace_epochs = 1\n[params]\n"training.lr" = { loguniform = [1e-4, 3e-2] }\n"model.dim" = [8, 16]\n'
    )
    summary = run_tune(
        str(tmp_path / "run.toml"),
        str(tmp_path / "space.toml"),
        out=str(tmp_path / "tuned"),
        progress=False,
        overrides=[f"tracking.mlflow_uri=sqlite:///{tmp_path}/mlflow.db"],
    )
    printed = capsys.readouterr()
    assert (
        "Configuration for experiment" not in printed.out and "tensorboard" not in printed.out.lower()
    )  # Tune's own report
    assert "Creating" not in printed.err  # MLflow's first-run INFO lines
    rows = summary["trials"]
    assert len(rows) == 4 and summary["metric"] == "valid_auc"
    assert all(r["status"] in ("completed", "stopped by ASHA after epoch 1") for r in rows), [r["status"] for r in rows]
    finished = [r for r in rows if r["status"] == "completed"]
    assert finished and all(r["model_uri"].startswith("models:/") and r["epochs"] == 2 for r in finished)
    bests = [r["best"] for r in rows]
    assert bests == sorted(bests, reverse=True) and not math.isnan(rows[0]["best"])
    assert summary["best"] == next(r for r in rows if r["model_uri"])  # the best trial that logged its model
    best = load_run_config(summary["best_toml"])  # deepsets train --config best.toml
    assert (
        best.training.lr == pytest.approx(summary["best"]["params"]["training.lr"])
        and best.model.dim == summary["best"]["params"]["model.dim"]
    )
    assert best.tracking.run_name == "" and best.training.epochs == 2
    assert len((tmp_path / "tuned" / "trials.md").read_text().splitlines()) == 6  # header, rule, 4 trials
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["deepsets.tune_status"] for c in children) == sorted(r["status"] for r in rows)
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}  # a trial ASHA stopped is not left RUNNING
    assert "tune/trials.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "tune")}
    assert orphaned_placement_groups() == []  # the stopped trials' CPUs are free again


def test_tune_with_the_default_space_and_its_output_redirected(tmp_path):
    """`deepsets tune` as a user runs it into a log: stdout to a file, stderr to a pipe (Tune
    pickles its callbacks; a `print` held by one stopped pickling once Ray swapped it). No
    --space: the default space, printed at start. MLFLOW_TRACKING_URI names the tracking store,
    as for `deepsets train`. A budget far beyond two trials' time: the trials end it. No raylet
    warning about too many worker processes."""
    import os
    import subprocess
    import sys

    from deepsets.pipelines.demo import make_demo_data

    make_demo_data(tmp_path / "data", rows=1200, seed=0, progress=False)
    text = default_demo_config(tmp_path / "data", workers=1).to_toml()
    (tmp_path / "run.toml").write_text(
        text.replace("dim = 64", "dim = 8")
        .replace("epochs = 3", "epochs = 1")
        .replace("batch_size = 512", "batch_size = 200")
    )
    server = f"sqlite:///{tmp_path}/server.db"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["MLFLOW_TRACKING_URI"] = server
    command = [
        sys.executable,
        "-m",
        "deepsets.pipelines.cli",
        "tune",
        "--config",
        "run.toml",
        "--trials",
        "2",
        "--budget",
        "1h",
        "--out",
        "out",
    ]
    with open(tmp_path / "tune.log", "w") as log:
        done = subprocess.run(
            command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.PIPE, text=True, timeout=900
        )
    printed = (tmp_path / "tune.log").read_text()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "internal error" not in done.stderr and "PicklingError" not in done.stderr
    # two trials at once on a private Ray stay under the raylet's process count for 2 cores
    assert "PYTHON worker processes have been started" not in printed + done.stderr
    assert (
        "no --space: searching the default space: training.lr loguniform [0.0001, 0.01]; model.dim choice [32, 64, 128]; "
        "model.dropout uniform [0.0, 0.3]; model.modality_dropout uniform [0.0, 0.3]"
    ) in printed
    assert "tuning 4 setting(s) over 2 trials within 3600 s, 2 at a time, on valid_auc" in printed
    best_toml = tmp_path / "out" / "best.toml"
    assert f"best: {best_toml} (deepsets train --config {best_toml})" in printed
    rows = json.loads((tmp_path / "out" / "trials.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "completed"]  # one epoch each: ASHA has no rung to stop them at
    best = load_run_config(best_toml)
    assert (
        best.training.lr == pytest.approx(rows[0]["params"]["training.lr"])
        and best.model.dim == rows[0]["params"]["model.dim"]
    )
    assert best.tracking.mlflow_uri == ""  # as in run.toml: the shell's store is not written into it
    assert not (tmp_path / "mlflow.db").exists()  # the shell's tracking store, not ./mlflow.db
    client = mlflow.tracking.MlflowClient(server)
    parent = client.search_runs(
        [client.get_experiment_by_name("deepsets").experiment_id], filter_string="tags.`deepsets.tune` = 'parent'"
    )
    assert len(parent) == 1 and parent[0].data.params["budget_s"] == "3600.0"
    assert "tune/best.toml" in {a.path for a in client.list_artifacts(parent[0].info.run_id, "tune")}
    children = client.search_runs(
        [parent[0].info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'"
    )
    assert sorted(c.data.tags["deepsets.tune_status"] for c in children) == ["completed", "completed"]


def test_a_time_budget_ends_an_open_ended_search(ray_session, demo_data, tmp_path, monkeypatch):
    """No trial count: only the budget can end the search. Trials running at its end are stopped
    (KILLED in MLflow, their CPUs freed); the best trial with a metric, if any, is reported."""
    from deepsets.pipelines.tuning.job import run_tune

    monkeypatch.chdir(tmp_path)
    text = (
        default_demo_config(demo_data, workers=1)
        .to_toml()
        .replace("dim = 64", "dim = 8")
        .replace("batch_size = 512", "batch_size = 200")
    )
    (tmp_path / "run.toml").write_text(
        text.replace("epochs = 3", "epochs = 50")
    )  # far more epochs than the budget allows
    (tmp_path / "space.toml").write_text('[params]\n"training.lr" = { loguniform = [1e-4, 3e-2] }\n')
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    summary = run_tune(
        str(tmp_path / "run.toml"),
        str(tmp_path / "space.toml"),
        budget_s=45,
        out=str(tmp_path / "tuned"),
        progress=False,
        mlflow_uri=uri,
    )
    rows = summary["trials"]
    assert rows and summary["budget_s"] == 45
    allowed = (
        "stopped by the time budget after epoch ",
        "stopped by ASHA after epoch ",
        "stopped by the time budget before its first epoch",
    )
    assert all(r["status"].startswith(allowed) and r["model_uri"] is None for r in rows), [r["status"] for r in rows]
    assert any(r["status"].startswith("stopped by the time budget") for r in rows)
    scored = [r for r in rows if not math.isnan(r["best"])]
    assert summary.get("best") == (scored[0] if scored else None)  # the best trial with a metric
    assert (tmp_path / "tuned" / "best.toml").exists() == bool(scored)
    client = mlflow.tracking.MlflowClient(uri)
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert {c.info.status for c in children} <= {"KILLED"}  # none left RUNNING
    assert orphaned_placement_groups() == []  # the stopped trials' CPUs are free again
