"""The command line end to end on small data: synth -> fit -> read, and the demo."""

import json
import sys

import pytest

from deepsets.pipelines.cli import main


def last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_json_output_leaves_a_callers_ray_running(ray_session, tmp_path, capsys):
    # --json stops the Ray a command started (so the JSON line is printed last), never one it found
    assert main(["synth", "--rows", "200", "--out", str(tmp_path / "data"), "--json"]) == 0
    assert last_json(capsys)["rows"] == 200 and ray_session.is_initialized()


def test_synth_fit_read_json(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(["synth", "--rows", "1500", "--out", str(data), "--seed", "3", "--rows-per-file", "1000", "--json"]) == 0
    )
    synth = last_json(capsys)
    assert synth["rows"] == 1500 and len(synth["files"]) == 2
    spec = tmp_path / "spec.json"
    assert main(["fit", "--schema", str(data / "schema.toml"), "--input", str(data), "--out", str(spec), "--json"]) == 0
    fitted = last_json(capsys)
    assert set(fitted["stats"]) == {"image", "title", "history", "frames", "tags", "country", "profile"}
    assert 0.85 < fitted["stats"]["image"]["presence_rate"] < 0.95
    assert (
        main(
            [
                "read",
                "--spec",
                str(spec),
                "--input",
                str(data / "part-*.parquet"),
                "--batch-size",
                "256",
                "--labels",
                "clicked",
                "labels",
                "--json",
            ]
        )
        == 0
    )
    read = last_json(capsys)
    assert read["rows"] == 1500 and read["batches"] == 6  # 5 x 256 + 220
    assert read["counts"]["history"]["truncated_rows"] == fitted["stats"]["history"]["truncated_rows"]


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert main(["synth", "--rows", "10", "--out", out]) == 0
    assert main(["synth", "--rows", "10", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "overwrite" in err[0]
    assert main(["synth", "--rows", "10", "--out", out, "--overwrite"]) == 0


def test_demo_json_summary(ray_session, tmp_path, capsys, monkeypatch):
    """`make demo` as it ships (60k rows): every stage accounts for its rows, and the ablation of
    the demo's model ranks the modalities as the planted truth does (issue 6: Spearman >= 0.9 for
    leave-one-out and Shapley on a model trained on `make demo`-sized data)."""
    monkeypatch.chdir(tmp_path)  # the demo's MLflow store is ./mlflow.db
    assert main(["demo", "--out", "demo", "--json"]) == 0
    summary = last_json(capsys)
    assert summary["data"]["rows"] == 60_000 and summary["data"]["train_files"] == 5
    assert summary["read"]["rows"] == 50_000 and summary["read"]["batches"] == 98  # 5/6 of the rows train, by 512
    train = summary["train"]
    assert train["run_id"] and train["model_uri"].startswith("models:/") and train["epochs_done"] == 3
    assert (
        0.75 <= train["metrics"]["valid_auc"] <= 0.89 and train["metrics"]["train_loss"] > 0
    )  # the label model's AUC is 0.89
    assert train["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db" and (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "demo" / "spec.json").exists()
    embedded = summary["embed"]  # the trained model, loaded back from MLflow, over all 60k rows
    assert embedded["rows_in"] == embedded["rows_out"] == 60_000 and embedded["rows_rejected"] == 0
    assert embedded["model_uri"] == train["model_uri"]
    ablated = summary["ablate"]
    assert ablated["rows"] == 10_000 and ablated["shapley_efficiency"]["abs_error"] < 1e-9
    assert set(ablated["spearman_vs_truth"]) == {"loo", "only", "permute", "shapley"}
    assert ablated["spearman_vs_truth"]["loo"] >= 0.9, ablated["spearman_vs_truth"]
    assert ablated["spearman_vs_truth"]["shapley"] >= 0.9, ablated["spearman_vs_truth"]
    assert (tmp_path / "demo" / "ablation" / "ablation.png").exists()


@pytest.mark.parametrize(
    "setting, field",
    [("training.lr=-1", "training.lr"), ("model.fusion=concatenate", "model.fusion"), ("model.heads=5", "model.heads")],
)
def test_train_config_errors_are_one_line_naming_the_field(setting, field, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[data]\ntrain = "data"\nlabel_columns = ["clicked"]\n[schema]\npath = "schema.toml"\n')
    assert main(["train", "--config", str(config), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and field in err[0], err


@pytest.mark.parametrize(
    "argv", [["synth", "--rows", "0", "--out", "x"], ["synth", "--rows", "5", "--out", "y", "--rows-per-file", "0"]]
)
def test_bad_arguments_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_an_unexpected_failure_is_one_line_and_a_traceback_file(monkeypatch, capsys, tmp_path):
    import deepsets.pipelines.commands.data as data_commands

    def broken(args):
        raise KeyError("a bug somewhere deep")

    monkeypatch.setattr(data_commands, "_run_fit", broken)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the log folder (tests/pipelines/test_error_log.py)
    code = main(["fit", "--schema", "s.toml", "--input", "x", "--out", str(tmp_path / "spec.json")])
    err = capsys.readouterr().err.strip()
    assert (
        code == 1
        and err.startswith("internal error: KeyError: 'a bug somewhere deep' (traceback in ")
        and "\n" not in err
    )
    log = err.rsplit("(traceback in ", 1)[1].rstrip(")")
    text = open(log).read()
    assert "Traceback (most recent call last)" in text and "raise KeyError" in text


def test_json_holds_null_where_a_number_is_not_finite(monkeypatch, capsys):
    import deepsets.pipelines.commands.data as data_commands

    monkeypatch.setattr(data_commands, "_run_read", lambda args: {"auc": float("nan"), "nested": [1.0, float("inf")]})
    assert main(["read", "--spec", "s.json", "--input", "x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"auc": None, "nested": [1.0, None]}


def test_the_cli_imports_no_heavy_package_until_a_command_runs():
    """`deepsets --help` stays fast: torch, Ray, polars, MLflow and pyarrow load only when a
    command needs them."""
    import subprocess

    code = (
        "import sys; from deepsets.pipelines.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'ray', 'polars', 'mlflow', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_takes_an_empty_mlflow_uri_from_the_environment(demo_data, monkeypatch):
    from deepsets.pipelines.commands.training import with_env_tracking_uri
    from deepsets.pipelines.demo import default_demo_config

    cfg = default_demo_config(demo_data)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert with_env_tracking_uri(cfg).tracking.mlflow_uri == ""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert with_env_tracking_uri(cfg).tracking.mlflow_uri == "http://tracking.example:5000"
    explicit = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow_uri": "sqlite:///x.db"})})
    assert with_env_tracking_uri(explicit).tracking.mlflow_uri == "sqlite:///x.db"  # the config wins
