"""A tracking URI's password reaches no file, MLflow param or artifact, summary or error message,
while the jobs still connect with it.

MLflow reaches a local store only through ``sqlite:`` (which takes no userinfo), so the runs
here carry their secret as a ``?password=`` query parameter, which SQLAlchemy accepts and
every write site redacts with the same function as a ``user:password@`` (the property tests of
``test_redaction`` cover that form); the sites that take no MLflow connection are checked
with a ``postgresql://user:password@`` URI.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from deepsets.pipelines.cli import main
from deepsets.pipelines.config import load_run_config
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import ConfigError, JobError
from deepsets.pipelines.models.checkpoint import TrainState, load_checkpoint, save_checkpoint
from deepsets.pipelines.redaction import config_toml

SECRET = "Sq1Pa55wordQ"


def files_holding(folder: Path, secret: str = SECRET) -> list:
    """Every file under ``folder`` whose bytes hold ``secret``, but the test's own ``run.toml``."""
    return [
        str(p.relative_to(folder))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.toml" and secret.encode() in p.read_bytes()
    ]


def small_config(demo_data, tmp_path, mlflow_uri, epochs=1):
    cfg = default_demo_config(demo_data, workers=1)
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"dim": 8}),
            "training": cfg.training.model_copy(update={"epochs": epochs, "batch_size": 300}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": "secret-run",
                    "storage_path": str(tmp_path / "ray"),
                    "mlflow_uri": mlflow_uri,
                    "artifact_location": str(tmp_path / "artifacts"),
                }
            ),
        }
    )


def test_train_and_resume_write_and_print_no_password(ray_session, demo_data, tmp_path, capfd):
    uri = f"sqlite:///{tmp_path}/mlflow.db?password={SECRET}"
    shown = f"sqlite:///{tmp_path}/mlflow.db?password=***"
    (tmp_path / "run.toml").write_text(small_config(demo_data, tmp_path, uri).to_toml())
    assert main(["train", "--config", str(tmp_path / "run.toml")]) == 0
    printed = capfd.readouterr()
    assert (
        f"MLflow run: {printed.out.split('MLflow run: ')[1].split()[0]} in {shown}" in printed.out
        and SECRET not in printed.out + printed.err
    )

    # resume: the checkpoint's config.json holds the redacted URI; the run goes on in the same MLflow run
    assert (
        main(["train", "--config", str(tmp_path / "run.toml"), "--set", "training.epochs=2", "--resume", "--json"]) == 0
    )
    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert summary["tracking_uri"] == shown and summary["epochs_done"] == 2 and summary["epochs_this_run"] == 1

    client = mlflow.tracking.MlflowClient(uri)  # the real URI still connects
    run = client.get_run(summary["run_id"])
    assert run.data.params["tracking.mlflow_uri"] == shown
    assert not [k for k, v in run.data.params.items() if SECRET in v]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [
        0,
        1,
    ]  # both starts logged to it
    config_text = Path(client.download_artifacts(run.info.run_id, "config.toml", str(tmp_path / "fetched"))).read_text()
    assert f'mlflow_uri = "{shown}"' in config_text and SECRET not in config_text
    _, _, saved, _ = load_checkpoint(summary["checkpoint"])
    assert saved["tracking"]["mlflow_uri"] == shown
    # the run folder (spec.json, run.json, checkpoints, Ray Train's files), the artifacts and MLflow's own database
    assert files_holding(tmp_path) == []


def test_tune_writes_no_password_in_trial_files_or_best_toml(
    ray_session, demo_data, demo_spec, tmp_path, monkeypatch, capsys
):
    from deepsets.pipelines.tuning.job import run_tune

    monkeypatch.chdir(tmp_path)
    demo_spec.save(tmp_path / "spec.json")
    uri = f"sqlite:///{tmp_path}/mlflow.db?password={SECRET}"
    cfg = small_config(demo_data, tmp_path, uri)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"spec": str(tmp_path / "spec.json")}),
            "tracking": cfg.tracking.model_copy(update={"run_name": "", "artifact_location": ""}),
        }
    )  # ./mlruns
    (tmp_path / "run.toml").write_text(cfg.to_toml())
    (tmp_path / "space.toml").write_text('trials = 1\n[params]\n"training.lr" = [0.003]\n')
    summary = run_tune(
        str(tmp_path / "run.toml"), str(tmp_path / "space.toml"), out=str(tmp_path / "tuned"), progress=False
    )
    printed = capsys.readouterr()
    assert summary["best"]["status"] == "completed" and SECRET not in json.dumps(summary) + printed.out + printed.err
    trial = json.loads(next((tmp_path / "tuned" / "trials").glob("*.json")).read_text())
    assert trial["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db?password=***"
    best = load_run_config(summary["best_toml"])
    assert best.tracking.mlflow_uri == f"sqlite:///{tmp_path}/mlflow.db?password=***"
    assert files_holding(tmp_path) == []
    # best.toml as it is cannot connect, and says so before any run starts
    with pytest.raises(
        ConfigError,
        match=r"tracking\.mlflow_uri: .*password=\*\*\* holds a password \(or token\) that deepsets replaced",
    ):
        run_tune(summary["best_toml"], str(tmp_path / "space.toml"), out=str(tmp_path / "again"), progress=False)


def test_config_toml_and_checkpoint_config_hold_no_userinfo_password(demo_data, demo_spec, tmp_path):
    cfg = small_config(demo_data, tmp_path, f"postgresql://alice:{SECRET}@db.example.com:5432/mlflow")
    text = config_toml(cfg)
    assert SECRET not in text and 'mlflow_uri = "postgresql://alice:***@db.example.com:5432/mlflow"' in text
    assert cfg.tracking.mlflow_uri.endswith(f"alice:{SECRET}@db.example.com:5432/mlflow")  # the config itself keeps it
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(
        tmp_path / "ckpt", TrainState({"w": torch.zeros(2)}, {}, {}, 0, 0), demo_spec, cfg.as_dict(), cfg.model_args()
    )
    assert files_holding(tmp_path / "ckpt") == []
    assert (
        load_checkpoint(tmp_path / "ckpt")[2]["tracking"]["mlflow_uri"]
        == "postgresql://alice:***@db.example.com:5432/mlflow"
    )


def test_a_redacted_tracking_uri_is_refused_by_name_before_connecting(demo_data, demo_spec, tmp_path):
    from deepsets.pipelines.training.tracking import open_mlflow_run

    cfg = small_config(demo_data, tmp_path, "postgresql://alice:***@db.example.com/mlflow")
    with pytest.raises(ConfigError) as info:
        open_mlflow_run(cfg, "secret-run", False, demo_spec)
    assert str(info.value).startswith(
        "tracking.mlflow_uri: postgresql://alice:***@db.example.com/mlflow holds a password"
    )
    assert "--set tracking.mlflow_uri=" in str(info.value)


def test_a_model_that_cannot_be_loaded_names_the_tracking_uri_without_its_password(tmp_path, monkeypatch):
    from deepsets.pipelines.models.source import load_model_source

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://alice:{SECRET}@127.0.0.1:9")  # the discard port: the connection is refused
    try:
        with pytest.raises(JobError) as info:
            load_model_source("runs:/0123456789abcdef/model")
    finally:
        mlflow.set_tracking_uri(before)
    message = str(info.value)
    assert "(tracking URI http://alice:***@127.0.0.1:9)" in message and SECRET not in message


@pytest.fixture
def cli_with_a_uri(monkeypatch, tmp_path):
    """``deepsets fit`` given a URI with a password on its command line; the user's log folder in ``tmp_path``."""
    import sys

    argv = [
        "fit",
        "--schema",
        "s.toml",
        "--input",
        f"https://alice:{SECRET}@data.example.com/t.parquet",
        "--out",
        str(tmp_path / "s.json"),
    ]
    monkeypatch.setattr(sys, "argv", ["deepsets", *argv])
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return argv


@pytest.mark.parametrize(
    "error, code, start",
    [
        (
            JobError(f"cannot reach postgresql://alice:{SECRET}@db.example.com/mlflow:\nconnection refused"),
            2,
            "error: cannot reach postgresql://alice:***@db.example.com/mlflow:; connection refused",
        ),
        (
            RuntimeError(f"API request to https://alice:{SECRET}@mlflow.example.com/api/2.0/mlflow/runs/get failed"),
            1,
            "internal error: RuntimeError: API request to https://alice:***@mlflow.example.com/api/2.0/mlflow/runs/get failed (traceback in ",
        ),
    ],
)
def test_the_error_line_and_the_traceback_file_hold_no_password(
    cli_with_a_uri, monkeypatch, tmp_path, capsys, error, code, start
):
    import deepsets.pipelines.commands.data as data_commands

    def failing(args):
        raise error

    monkeypatch.setattr(data_commands, "_run_fit", failing)
    assert main(cli_with_a_uri) == code
    printed = capsys.readouterr()
    assert printed.err.startswith(start) and SECRET not in printed.out + printed.err
    logs = list((tmp_path / "state").rglob("*.log"))
    assert len(logs) == (code == 1) and all(
        "https://alice:***@data.example.com/t.parquet" in p.read_text() for p in logs
    )
    assert files_holding(tmp_path) == []


def test_a_traceback_on_stderr_holds_no_password(cli_with_a_uri, monkeypatch, tmp_path, capsys):
    import deepsets.pipelines.commands.data as data_commands

    def failing(args):
        raise RuntimeError(f"API request to https://alice:{SECRET}@mlflow.example.com/api failed")

    monkeypatch.setattr(data_commands, "_run_fit", failing)
    (tmp_path / "state").write_text("a file where the log folder would be")  # no log file can be written
    assert main(cli_with_a_uri) == 1
    err = capsys.readouterr().err
    assert (
        "Traceback (most recent call last)" in err
        and "https://alice:***@mlflow.example.com/api" in err
        and SECRET not in err
    )


def test_json_output_holds_no_password(monkeypatch, capsys):
    import deepsets.pipelines.commands.data as data_commands

    monkeypatch.setattr(
        data_commands,
        "_run_read",
        lambda args: {"tracking_uri": f"postgresql://alice:{SECRET}@db/mlflow", "rows": [1, 2]},
    )
    assert main(["read", "--spec", "s.json", "--input", "x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "tracking_uri": "postgresql://alice:***@db/mlflow",
        "rows": [1, 2],
    }
