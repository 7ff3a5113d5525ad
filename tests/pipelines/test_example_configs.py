"""The example configs under configs/: each parses with the loader its command uses, the demo's
is the run ``make demo`` trains, and it trains (one step) on the demo's data."""

from __future__ import annotations

import math
import shutil
import tomllib
from pathlib import Path

import pytest

from deepsets.pipelines.config import load_run_config
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.embedding.job import parse_embed_config
from deepsets.pipelines.training.run import run_training
from deepsets.pipelines.tuning.space import check_values, load_space

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = sorted(CONFIGS.glob("*.toml"))


def kind_of(path: Path) -> str:
    """Which loader reads the file: a run config has ``[data]``, a search space ``[params]``,
    the options of ``deepsets embed`` an ``output``."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for kind, key in (("run", "data"), ("space", "params"), ("embed", "output")):
        if key in raw:
            return kind
    raise AssertionError(
        f"{path.name}: neither a run config, a search space nor embed options: teach this test its loader"
    )


@pytest.fixture
def demo_layout(tmp_path, demo_data):
    """configs/ copied beside a ``demo_output/data`` that is the demo's data, as after ``make demo``."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    (tmp_path / "demo_output").mkdir()
    (tmp_path / "demo_output" / "data").symlink_to(demo_data, target_is_directory=True)
    return tmp_path / "configs"


def test_there_are_examples_of_every_kind():
    assert {"demo.toml", "ranking.toml", "two_tower.toml", "embed.toml", "tune_space.toml"} <= {
        p.name for p in EXAMPLES
    }
    assert {kind_of(p) for p in EXAMPLES} == {"run", "space", "embed"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parses_with_its_loader(path, demo_layout):
    copied = demo_layout / path.name
    kind = kind_of(copied)
    if kind == "run":
        cfg = load_run_config(copied)
        assert cfg.data.train and all(Path(p).is_absolute() for p in cfg.data.train)  # relative to the file
        cfg.feature_schema()  # the schema file it names (or its inline tables) reads as well
    elif kind == "space":
        space = load_space(copied)
        assert space.params
        check_values(space, load_run_config(demo_layout / "demo.toml").as_dict(), str(copied))  # every value trainable
    else:
        cfg = parse_embed_config(**tomllib.loads(copied.read_text(encoding="utf-8")))
        assert cfg.model and cfg.inputs and cfg.output


def test_demo_config_is_the_run_make_demo_trains(demo_layout, demo_data):
    from_file = load_run_config(demo_layout / "demo.toml")
    demo = default_demo_config(demo_data, workers=2)
    for section in ("model", "task", "training", "scaling", "tracking"):
        assert getattr(from_file, section) == getattr(demo, section), section
    assert from_file.data.label_columns == demo.data.label_columns
    assert [Path(p).resolve() for p in from_file.data.train] == [Path(p).resolve() for p in demo.data.train]
    assert Path(from_file.schema_.path).resolve() == Path(demo.schema_.path).resolve()


@pytest.mark.slow
def test_demo_config_trains_one_step(demo_layout, ray_session, tmp_path):
    overrides = [
        "training.epochs=1",
        "training.batch_size=3000",
        "scaling.workers=1",  # 3,000 training rows: one step
        f"tracking.mlflow_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.storage_path={tmp_path / 'ray'}",
        "tracking.run_name=example-demo",
    ]
    summary = run_training(load_run_config(demo_layout / "demo.toml", overrides), progress=False)
    assert summary["epochs_done"] == 1
    assert summary["model_uri"].startswith("models:/")
    assert math.isfinite(summary["metrics"]["valid_auc"]) and 0.0 <= summary["metrics"]["valid_auc"] <= 1.0
