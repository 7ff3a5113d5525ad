"""The flags of init, fit and tune are built from InitConfig, FitConfig and TuneConfig: each option
is declared once (name, type, default, help), checked by the model on the command line and in the
Python API alike, and a bad one is a single `error:` line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Annotated, List, Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, Field

import deepsets
from deepsets.pipelines.cli import build_parser, main
from deepsets.pipelines.commands.config_flags import add_config_flags, config_values
from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.fitting import FitConfig
from deepsets.pipelines.init.config import InitConfig
from deepsets.pipelines.options import Flag
from deepsets.pipelines.tuning import job as tune_job
from deepsets.pipelines.tuning.config import TuneConfig, parse_tune_config

JOBS = {"init": InitConfig, "fit": FitConfig, "tune": TuneConfig}
FLAGS = {  # as users' scripts spell them
    "init": {"--input", "--label", "--valid", "--id", "--out", "--overwrite", "--json"},
    "fit": {"--schema", "--input", "--out", "--overwrite", "--no-validate", "--json"},
    "tune": {"--config", "--space", "--trials", "--budget", "--set", "--out", "--overwrite", "--ray-address", "--json"},
}


def command_parser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", sorted(JOBS))
def test_every_field_is_a_flag_and_every_flag_a_field(command):
    cls = JOBS[command]
    actions = {a.dest: a for a in command_parser(command)._actions if a.dest not in ("help", "json")}
    assert set(actions) == set(cls.model_fields)
    for name, info in cls.model_fields.items():
        action = actions[name]
        if not (command == "fit" and name == "out"):  # required on the command line only
            assert action.required == info.is_required(), name
        if not info.is_required():
            assert action.default == info.get_default(call_default_factory=True), name
        assert info.description in action.help.replace("%%", "%"), name
    spelled = {s for a in command_parser(command)._actions for s in a.option_strings} - {"-h", "--help"}
    assert spelled == FLAGS[command]


def test_the_flags_a_python_caller_may_leave_out_are_still_required_on_the_command_line():
    actions = {a.dest: a for a in command_parser("fit")._actions}
    assert actions["out"].required and not FitConfig.model_fields["out"].is_required()
    assert actions["check_values"].option_strings == ["--no-validate"] and actions["check_values"].default is True
    tune = {a.dest: a for a in command_parser("tune")._actions}
    assert tune["overrides"].option_strings == ["--set"] and tune["overrides"].metavar == "SECTION.FIELD=VALUE"
    assert tune["budget"].metavar == "TIME" and tune["budget"].type is None  # text, read by the model
    assert {a.dest: a for a in command_parser("init")._actions}["id_column"].option_strings == ["--id"]


def parsed(argv: List[str]) -> BaseModel:
    args = build_parser().parse_args(argv)
    cls = JOBS[args.command]
    return cls(**config_values(args, cls))


def test_parsed_flags_build_the_same_config_as_keywords():
    tune = parsed(
        ["tune", "--config", "run.toml", "--budget", "1h30m", "--set", "training.lr=0.1", "--set", "model.dim=32"]
        + ["--trials", "4", "--ray-address", "auto"]
    )
    assert tune == TuneConfig(
        config="run.toml",
        budget=5400,
        overrides=["training.lr=0.1", "model.dim=32"],
        trials=4,
        ray_address="auto",
    )
    assert tune.budget == 5400.0 and parsed(["tune", "--config", "c"]) == TuneConfig(config="c")
    fit = parsed(["fit", "--schema", "s.toml", "--input", "a", "b", "--out", "spec.json", "--no-validate"])
    assert fit == FitConfig(schema="s.toml", inputs=["a", "b"], out="spec.json", validate=False)
    assert not fit.check_values and fit.feature_schema == "s.toml"
    init = parsed(["init", "--input", "t", "--label", "y", "--valid", "v1", "v2", "--id", "key", "--overwrite"])
    assert init == InitConfig(inputs=["t"], label="y", valid=["v1", "v2"], id_column="key", overwrite=True)
    assert parsed(["init", "--input", "t", "--label", "y"]).out == "."


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["tune", "--config", "run.toml", "--trials", "0"],
            "tune options: trials: Input should be greater than or equal to 1 (found 0)",
        ),
        (
            ["tune", "--config", "run.toml", "--budget", "2x"],
            "tune options: budget: expected a duration such as 90s, 20m, 1h, 1h30m or plain seconds (found '2x')",
        ),
        (
            ["tune", "--config", "run.toml", "--budget", "0"],
            "tune options: budget: must be more than 0 seconds (found '0')",
        ),
        (
            ["init", "--input", "t", "--label", ""],
            "init options: label: String should have at least 1 character (found '')",
        ),
        (
            ["fit", "--schema", "s.toml", "--input", "a", "--out", ""],
            "fit options: out: String should have at least 1 character (found '')",
        ),
    ],
)
def test_a_bad_value_is_one_error_line_naming_the_option(argv, expected, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {expected}"]


def test_bad_values_are_all_named_at_once_before_any_file_is_read(tmp_path, capsys):
    assert main(["tune", "--config", str(tmp_path / "none.toml"), "--trials", "0", "--budget=-5s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: tune options: 2 problems: trials: Input should be greater than or equal to 1 (found 0); "
        "budget: expected a duration such as 90s, 20m, 1h, 1h30m or plain seconds (found '-5s')"
    ]


def test_a_budget_is_text_as_the_flag_takes_it_or_seconds():
    assert [parse_tune_config(config="c", budget=b).budget for b in ("90s", "20m", "300", 45, 2.5)] == [
        90,
        1200,
        300,
        45,
        2.5,
    ]
    for bad, problem in ((0, r"must be more than 0 seconds \(found 0\)$"), (True, "expected a duration")):
        with pytest.raises(ConfigError, match=rf"^tune options: budget: {problem}"):
            parse_tune_config(config="c", budget=bad)


def test_tune_from_python_takes_a_config_or_its_fields(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tune_job, "run_tune", lambda *args, **kwargs: calls.append((args, kwargs)) or {"trials": []})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert deepsets.tune(config=tmp_path / "run.toml", budget="20m", overrides=["training.lr=0.1"], progress=False)
    deepsets.tune(deepsets.TuneConfig(config=str(tmp_path / "run.toml"), budget=1200, overrides=["training.lr=0.1"]))
    assert calls[0][0] == calls[1][0] == (str(tmp_path / "run.toml"), None)
    assert calls[0][1]["budget_s"] == calls[1][1]["budget_s"] == 1200.0
    assert calls[0][1]["overrides"] == ["training.lr=0.1"] and calls[0][1]["mlflow_uri"] == ""
    assert {k: v for k, v in calls[0][1].items() if k != "progress"} == {
        k: v for k, v in calls[1][1].items() if k != "progress"
    }
    with pytest.raises(ConfigError, match=r"^tune options: trials: Input should be greater than or equal to 1"):
        deepsets.tune(config="run.toml", trials=0)
    with pytest.raises(TypeError, match=r"must be a TuneConfig \(found PosixPath\); or pass its fields as keywords"):
        deepsets.tune(tmp_path / "run.toml")
    assert len(calls) == 2


def test_init_from_python_takes_a_config_or_its_fields(tmp_path):
    rows = 40
    table = pa.table(
        {"key": list(range(rows)), "shop": [f"s{i % 4}" for i in range(rows)], "y": [i % 2 for i in range(rows)]}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    first = deepsets.init(inputs=tmp_path / "t.parquet", label="y", out=tmp_path / "a")  # paths as Path objects
    second = deepsets.init(
        deepsets.InitConfig(inputs=[str(tmp_path / "t.parquet")], label="y", out=str(tmp_path / "b"))
    )
    assert first["schema"] == str(tmp_path / "a" / "schema.toml") and Path(second["run_config"]).is_file()
    assert first["columns"] == second["columns"] and first["task"]["kind"] == "binary"
    assert [(c["column"], c["role"]) for c in first["columns"]] == [("key", "id"), ("shop", "feature"), ("y", "label")]
    with pytest.raises(ConfigError, match=r"^init options: 2 problems: label: Field required; lable: unknown field"):
        deepsets.init(inputs=[str(tmp_path / "t.parquet")], lable="y")


def test_fit_from_python_refuses_a_schema_that_is_no_feature_schema():
    with pytest.raises(
        ConfigError,
        match=r"^fit options: schema: expected a schema TOML path or a FeatureSchema \(found a TuneConfig\)$",
    ):
        deepsets.fit(schema=TuneConfig(config="c"), inputs=["x"])


class Toy(BaseModel):
    """The field types the three jobs added to the flag builder."""

    limit: Annotated[Union[str, float, None], Flag(metavar="TIME")] = Field(None, description="a limit")
    out: Annotated[Optional[str], Flag(required=True)] = Field(None, description="where")
    sets: Annotated[List[str], Flag("--set", repeat=True)] = Field(default_factory=list, description="settings")


def test_a_union_with_text_is_a_text_flag_and_a_repeated_flag_may_default_to_empty():
    parser = argparse.ArgumentParser(prog="toy")
    add_config_flags(parser, Toy)
    assert config_values(parser.parse_args(["--out", "o"]), Toy) == {"limit": None, "out": "o", "sets": []}
    values = config_values(parser.parse_args(["--out", "o", "--limit", "1h", "--set", "a", "--set", "b"]), Toy)
    assert values == {"limit": "1h", "out": "o", "sets": ["a", "b"]}
    assert config_values(parser.parse_args(["--out", "o"]), Toy)["sets"] == []  # the default list is not appended to
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --out is required on the command line


def test_a_repeated_flag_with_items_by_default_is_a_mistake_in_the_model():
    class Prefilled(BaseModel):
        sets: Annotated[List[str], Flag(repeat=True)] = Field(default_factory=lambda: ["a"], description="settings")

    with pytest.raises(TypeError, match=r"Prefilled.sets: a repeated flag's default must be None or empty"):
        add_config_flags(argparse.ArgumentParser(), Prefilled)


def test_the_config_modules_load_no_heavy_package():
    code = (
        "import sys; import deepsets.pipelines.fitting, deepsets.pipelines.init.config, "
        "deepsets.pipelines.tuning.config; "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'polars', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the command line is built from them cheaply
