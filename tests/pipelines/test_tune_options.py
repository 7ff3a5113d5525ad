"""`deepsets tune` before any trial runs: --budget, the default space, values checked up front,
the output folder, the tracking URI, and the progress callback Tune pickles. No Ray needed."""

from __future__ import annotations

import builtins
import math
from types import SimpleNamespace

import mlflow
import pytest

from deepsets.pipelines.cli import main
from deepsets.pipelines.config import load_run_config, parse_run_config
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.training.selection import Selection
from deepsets.pipelines.tuning import job
from deepsets.pipelines.tuning.budget import parse_budget
from deepsets.pipelines.tuning.space import DEFAULT_PARAMS, default_space, parse_space, with_params


@pytest.fixture
def run_toml(demo_data, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(default_demo_config(demo_data, workers=1).to_toml())
    return path


def test_budgets_in_seconds_minutes_hours_or_plain_seconds():
    assert [parse_budget(t) for t in ("90s", "20m", "1h", "1h30m", "300", " 2.5m ", "40S")] == [
        90,
        1200,
        3600,
        5400,
        300,
        150,
        40,
    ]
    for bad in ("abc", "20x", "-5s", "", "m", "1 h"):
        with pytest.raises(ConfigError) as info:
            parse_budget(bad)
        assert (
            str(info.value)
            == f"--budget: expected a duration such as 90s, 20m, 1h, 1h30m or plain seconds (found {bad!r})"
        )
    with pytest.raises(ConfigError, match=r"^--budget: must be more than 0 seconds \(found '0s'\)$"):
        parse_budget("0s")


def test_a_bad_budget_is_one_error_line(tmp_path, capsys):
    assert main(["tune", "--config", str(tmp_path / "run.toml"), "--budget", "20 minutes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: tune options: budget: expected a duration such as 90s, 20m, 1h, 1h30m or plain seconds "
        "(found '20 minutes')"
    ]


def test_the_default_space_validates_against_the_run_config(demo_data):
    base = default_demo_config(demo_data, workers=1).as_dict()
    space = default_space(base)
    assert [p.key for p in space.params] == list(DEFAULT_PARAMS) and space.trials is None
    for param in space.params:  # every value a trial can draw is a valid run config
        for value in param.extremes():
            cfg = parse_run_config(with_params(base, {param.key: value}))
            section, _, name = param.key.partition(".")
            assert getattr(getattr(cfg, section), name) == value
    # a model.dim its heads do not divide is left out; with none left, model.dim is not searched
    heads6 = with_params(base, {"model.heads": 6, "model.dim": 48})
    assert "model.dim" not in [p.key for p in default_space(heads6).params]
    heads8 = default_space(with_params(base, {"model.heads": 8, "model.dim": 64}))
    assert next(p for p in heads8.params if p.key == "model.dim").values == (32, 64, 128)


def test_values_no_trial_could_train_with_are_one_error_line_before_ray(run_toml, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(
        '[params]\n"training.lr" = [-1.0, 0.01]\n"model.dim" = { uniform = [0.2, 0.9] }\n"model.fusion" = ["nope"]\n'
    )
    assert main(["tune", "--config", str(run_toml), "--space", str(space), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {space}: 3 problems: "), err
    assert (
        'params."training.lr": the value -1.0 is refused by the run config (training.lr: Input should be greater than 0'
        in err[0]
    )
    assert 'params."model.dim": no integer between 0.2 and 0.9' in err[0]
    assert "params.\"model.fusion\": the value 'nope' is refused by the run config (model.fusion: " in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_unknown_space_key_is_one_lowercase_error_line(run_toml, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text('[params]\n"training.lrr" = [0.01]\n')
    assert main(["tune", "--config", str(run_toml), "--space", str(space)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f'error: {space}: params."training.lrr": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)'
    ]


def test_an_earlier_search_in_out_is_refused_or_with_overwrite_cleared(run_toml, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (out / "trials").mkdir(parents=True)
    (out / "best.toml").write_text("stale")
    (out / "trials" / "abc_00000.json").write_text("{}")
    (out / "notes.txt").write_text("the user's own")
    assert main(["tune", "--config", str(run_toml), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --out {out} holds an earlier search (best.toml, trials): pass --overwrite to replace it, or choose another --out"
    ]
    assert (out / "best.toml").exists()

    class Stop(Exception):
        pass

    def no_search(*args, **kwargs):  # what --overwrite left behind, seen where the search would start
        raise Stop(sorted(p.name for p in out.iterdir()), list((out / "trials").iterdir()))

    monkeypatch.setattr(job.FeatureSpec, "fit", no_search)
    with pytest.raises(Stop) as info:
        job.run_tune(str(run_toml), out=str(out), overwrite=True, progress=False)
    assert info.value.args == (["notes.txt", "trials"], [])


def test_no_finished_trial_logs_no_best_toml_even_with_one_in_out(demo_data, tmp_path):
    cfg = default_demo_config(demo_data, workers=1)
    (tmp_path / "best.toml").write_text("stale")  # as an earlier search left it
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.tracking.MlflowClient(uri)
    parent = client.create_run(client.create_experiment("tune-report")).info.run_id
    rows = [
        {
            "trial": "t_00000",
            "params": {"training.lr": 0.01},
            "status": "error: boom",
            "epochs": 0,
            "best": math.nan,
            "best_epoch": None,
            "model_uri": None,
            "run_id": None,
            "run_name": "tune-x-t_00000",
        }
    ]
    selection = Selection.of("", 0, "binary", 10, True)
    space = parse_space({"params": {"training.lr": [0.01]}})
    summary = job._report(rows, cfg, space, selection, tmp_path, uri, parent, lambda *a: None)
    assert "best_toml" not in summary and "best" not in summary
    assert sorted(a.path for a in client.list_artifacts(parent, "tune")) == ["tune/trials.json", "tune/trials.md"]


def test_tune_takes_the_tracking_uri_of_the_users_shell(run_toml, monkeypatch):
    seen = {}
    monkeypatch.setattr(job, "run_tune", lambda *args, **kwargs: seen.update(kwargs) or {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert main(["tune", "--config", str(run_toml), "--budget", "20m"]) == 0
    assert seen["mlflow_uri"] == "http://mlflow.example:5000" and seen["budget_s"] == 1200
    assert load_run_config(run_toml).tracking.mlflow_uri == ""  # the config's own empty value: the shell's wins


def test_the_progress_callback_pickles_after_ray_replaces_print(monkeypatch, capsys):
    from ray import cloudpickle, tune

    from deepsets.pipelines.tuning.progress import trial_progress

    callback = trial_progress("valid_auc", show=True)
    original = builtins.print
    # Ray's driver swaps builtins.print (tqdm_ray's safe_print) on the first line a worker sends it
    monkeypatch.setattr(builtins, "print", lambda *a, **k: original(*a, **k))
    copy = cloudpickle.loads(cloudpickle.dumps(tune.RunConfig(callbacks=[callback]))).callbacks[0]
    trial = SimpleNamespace(trial_id="abc_00001")
    copy.on_trial_result(0, [trial], trial, {"valid_auc": 0.61234, "training_iteration": 2})
    copy.on_trial_complete(0, [trial], trial)
    assert capsys.readouterr().out.splitlines() == [
        "  abc_00001 epoch 2: valid_auc 0.6123",
        "  abc_00001 done (1 trial(s) ended so far)",
    ]
    quiet = cloudpickle.loads(cloudpickle.dumps(trial_progress("valid_auc", show=False)))
    quiet.on_trial_result(0, [trial], trial, {"valid_auc": 0.5, "training_iteration": 1})
    assert capsys.readouterr().out == ""
