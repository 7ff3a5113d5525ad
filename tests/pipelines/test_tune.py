"""`deepsets tune`: the search space file, and four tiny trials on the shared Ray session."""

from __future__ import annotations

import math

import mlflow
import pytest

from deepsets.pipelines.config import load_run_config
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.tuning.orphans import orphaned_placement_groups
from deepsets.pipelines.tuning.space import parse_space


def test_space_keys_and_distributions_are_checked_together():
    space = parse_space({"trials": 3, "params": {"training.lr": {"loguniform": [1e-4, 1e-2]}, "model.dim": [16, 32],
                                                 "model.dropout": {"uniform": [0.0, 0.3]}, "training.warmup_steps": {"uniform": [0, 50]}}})
    assert space.trials == 3 and [p.distribution for p in space.params] == ["loguniform", "choice", "uniform", "uniform"]
    warmup = space.params[3].sample_space()
    assert all(isinstance(warmup.sample(), int) for _ in range(5))  # an integer field gets integers
    with pytest.raises(ConfigError) as info:
        parse_space({"trails": 2, "grace_epochs": 0, "params": {"model.dimension": [1], "schema.path": ["a"],
                                                                 "training.lr": {"loguniform": [0, 1]}, "model.dim": {"normal": [0, 1]}}})
    assert info.value.problems == [
        "trails: unknown field (expected params, trials, grace_epochs, reduction_factor)",
        "grace_epochs: must be an integer >= 1 (found 0)",
        'params."model.dimension": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)',
        'params."schema.path": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)',
        'params."training.lr": loguniform needs [low, high] with low < high and low > 0 (found [0, 1])',
        'params."model.dim": give a list of choices or one of {choice = [...]}, {uniform = [low, high]}, {loguniform = [low, high]} (found {\'normal\': [0, 1]})',
    ]


def test_four_trials_asha_a_table_and_a_best_config(ray_session, demo_data, tmp_path, monkeypatch, capsys):
    from deepsets.pipelines.tuning.job import run_tune

    monkeypatch.chdir(tmp_path)
    cfg = default_demo_config(demo_data, workers=1)
    text = cfg.to_toml().replace("dim = 64", "dim = 8").replace("epochs = 3", "epochs = 2").replace("batch_size = 512", "batch_size = 200")
    (tmp_path / "run.toml").write_text(text)
    (tmp_path / "space.toml").write_text('trials = 4\ngrace_epochs = 1\n[params]\n"training.lr" = { loguniform = [1e-4, 3e-2] }\n"model.dim" = [8, 16]\n')
    summary = run_tune(str(tmp_path / "run.toml"), str(tmp_path / "space.toml"), out=str(tmp_path / "tuned"), progress=False,
                       overrides=[f"tracking.mlflow_uri=sqlite:///{tmp_path}/mlflow.db"])
    printed = capsys.readouterr()
    assert "Configuration for experiment" not in printed.out and "tensorboard" not in printed.out.lower()  # Tune's own report
    assert "Creating" not in printed.err  # MLflow's first-run INFO lines
    rows = summary["trials"]
    assert len(rows) == 4 and summary["metric"] == "valid_auc"
    assert all(r["status"] in ("completed", "stopped by ASHA after epoch 1") for r in rows), [r["status"] for r in rows]
    finished = [r for r in rows if r["status"] == "completed"]
    assert finished and all(r["model_uri"].startswith("models:/") and r["epochs"] == 2 for r in finished)
    bests = [r["best"] for r in rows]
    assert bests == sorted(bests, reverse=True) and summary["best"] == rows[0] and not math.isnan(rows[0]["best"])
    best = load_run_config(summary["best_toml"])  # deepsets train --config best.toml
    assert best.training.lr == pytest.approx(rows[0]["params"]["training.lr"]) and best.model.dim == rows[0]["params"]["model.dim"]
    assert best.tracking.run_name == "" and best.training.epochs == 2
    assert len((tmp_path / "tuned" / "trials.md").read_text().splitlines()) == 6  # header, rule, 4 trials
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(summary["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["deepsets.tune_status"] for c in children) == sorted(r["status"] for r in rows)
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}  # a trial ASHA stopped is not left RUNNING
    assert "tune/trials.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "tune")}
    assert orphaned_placement_groups() == []  # the stopped trials' CPUs are free again
