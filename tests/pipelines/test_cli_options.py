"""The flags of embed, ablate and retrieve are built from their config models: each option is
declared once (name, type, default, help) and reaches the job without a keyword list."""

from __future__ import annotations

import argparse
from typing import Annotated, List, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from deepsets.pipelines.ablation.config import METHOD_NAMES, AblateConfig
from deepsets.pipelines.cli import build_parser, main
from deepsets.pipelines.commands.config_flags import add_config_flags, config_values
from deepsets.pipelines.embedding.config import EmbedConfig
from deepsets.pipelines.options import Flag
from deepsets.pipelines.retrieval.config import RetrieveConfig

JOBS = {"embed": EmbedConfig, "ablate": AblateConfig, "retrieve": RetrieveConfig}


def command_parser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", sorted(JOBS))
def test_every_field_is_a_flag_with_the_fields_default_and_description(command):
    cls = JOBS[command]
    actions = {a.dest: a for a in command_parser(command)._actions}
    assert set(cls.model_fields) <= set(actions), set(cls.model_fields) - set(actions)
    for name, info in cls.model_fields.items():
        action = actions[name]
        assert action.required == info.is_required(), name
        if not info.is_required() and name != "methods":
            assert action.default == info.get_default(call_default_factory=True), name
        assert info.description.replace("%", "%%").split(" (")[0] in action.help.replace("do not ", ""), name


def test_the_flags_keep_their_names():
    flags = {command: {s for a in command_parser(command)._actions for s in a.option_strings} for command in JOBS}
    assert {"--model", "--input", "--output", "--fragment-rows", "--with-modalities", "--tower"} <= flags["embed"]
    assert {"--input", "--methods", "--no-mlflow", "--shapley-permutations", "--items", "--exclude-columns"} <= flags[
        "ablate"
    ]
    assert {"--items", "--queries", "--k", "--out", "--index", "--nprobe", "--target-recall"} <= flags["retrieve"]
    ranking = next(g for g in command_parser("ablate")._action_groups if g.title.startswith("ranking models"))
    assert [a.option_strings[0] for a in ranking._group_actions] == [
        "--k",
        "--group",
        "--items",
        "--item-column",
        "--exclude",
        "--exclude-columns",
    ]


def parsed(argv: List[str], cls: type[BaseModel]) -> BaseModel:
    return cls(**config_values(build_parser().parse_args(argv), cls))


def test_parsed_flags_build_the_same_config_as_keywords():
    ablate = parsed(
        ["ablate", "--model", "m", "--input", "a", "b", "--methods", "loo, shapley,", "--no-mlflow"]
        + ["--items", "i1", "--items", "i2", "--k", "5", "--bootstrap", "0", "--shapley-permutations", "64"],
        AblateConfig,
    )
    assert ablate == AblateConfig(
        model="m",
        inputs=["a", "b"],
        methods=["loo", "shapley"],
        log_mlflow=False,
        items=["i1", "i2"],
        k=5,
        bootstrap=0,
        shapley_permutations=64,
    )
    assert parsed(["ablate", "--model", "m", "--input", "a"], AblateConfig) == AblateConfig(model="m", inputs=["a"])
    embed = parsed(
        ["embed", "--model", "m", "--input", "x", "--output", "o", "--tower", "item", "--workers", "2"], EmbedConfig
    )
    assert embed == EmbedConfig(model="m", inputs=["x"], output="o", tower="item", workers=2)
    retrieve = parsed(["retrieve", "--items", "i", "--queries", "q", "--out", "o", "--index", "ivf"], RetrieveConfig)
    assert retrieve == RetrieveConfig(items="i", queries="q", out="o", index="ivf")


def test_a_bad_value_is_one_error_line_naming_the_option(capsys):
    assert main(["embed", "--model", "m", "--input", "x", "--output", "o", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: embed options: batch_size: Input should be greater than or equal to 1 (found 0)"], err
    assert main(["ablate", "--model", "m", "--input", "x", "--methods", "loo,mode"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown methods ['mode']; choose from loo, only, permute, shapley, maxpool" in err[0]


def test_the_method_names_are_the_implemented_methods():
    from deepsets.pipelines.ablation.methods import METHODS

    assert tuple(METHODS) == METHOD_NAMES


class Toy(BaseModel):
    """Every kind of field a job option can be."""

    path: str = Field(min_length=1, description="where")
    count: int = Field(3, ge=1, description="how many")
    rate: Optional[float] = Field(None, description="how fast (default: as fast as it goes)")
    mode: Literal["a", "b"] = Field("a", description="which way")
    quiet: bool = Field(False, description="say less")
    track: bool = Field(True, description="track it")
    names: Annotated[List[str], Flag("--name", group="lists")] = Field(description="one or more names")
    extra: Annotated[Optional[List[str]], Flag(repeat=True, metavar="X", group="lists")] = Field(
        None, description="an extra, repeatable"
    )
    sizes: Annotated[List[int], Flag(separator=",")] = Field(default_factory=lambda: [1, 2], description="sizes")


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_config_flags(parser, Toy)
    return parser


def test_a_models_fields_become_flags_by_their_types():
    parser = toy_parser()
    args = parser.parse_args(["--path", "p", "--name", "n1", "n2", "--extra", "e", "--extra", "f", "--no-track"])
    assert Toy(**config_values(args, Toy)) == Toy(path="p", names=["n1", "n2"], extra=["e", "f"], track=False)
    args = parser.parse_args(["--path", "p", "--name", "n", "--count", "7", "--rate", "0.5", "--mode", "b"])
    values = config_values(args, Toy)
    assert values["count"] == 7 and values["rate"] == 0.5 and values["mode"] == "b" and values["sizes"] == [1, 2]
    assert config_values(parser.parse_args(["--path", "p", "--name", "n", "--sizes", "4,5"]), Toy)["sizes"] == [4, 5]
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["count"] == "how many (default 3)" and helps["rate"] == "how fast (default: as fast as it goes)"
    assert (
        helps["track"] == "do not track it" and helps["quiet"] == "say less" and helps["sizes"] == "sizes (default 1,2)"
    )
    lists = next(g for g in parser._action_groups if g.title == "lists")
    assert [a.dest for a in lists._group_actions] == ["names", "extra"]


@pytest.mark.parametrize("argv", [["--name", "n"], ["--path", "p", "--name", "n", "--mode", "c"], ["--path", "p"]])
def test_a_missing_or_bad_flag_is_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        toy_parser().parse_args(argv)
    assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("toy: error:")


def test_a_field_without_a_description_or_of_an_unknown_type_is_a_mistake_in_the_model():
    class Undescribed(BaseModel):
        size: int = 1

    class Unknown(BaseModel):
        table: dict = Field(default_factory=dict, description="a table")

    with pytest.raises(TypeError, match=r"Undescribed.size: a job option needs a description"):
        add_config_flags(argparse.ArgumentParser(), Undescribed)
    with pytest.raises(TypeError, match=r"Unknown.table: no command-line flag is built for a value of type"):
        add_config_flags(argparse.ArgumentParser(), Unknown)
