"""``from deepsets import init, fit, train, embed, ablate, retrieve, tune``: every public name exists, is
documented, and ``import deepsets`` alone loads none of the heavy packages."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import deepsets

JOBS = ("init", "fit", "train", "embed", "ablate", "retrieve", "tune")


def test_every_public_name_resolves_and_is_documented():
    assert set(JOBS) <= set(deepsets.__all__) and set(deepsets.__all__) <= set(dir(deepsets))
    for name in deepsets.__all__:
        value = getattr(deepsets, name)
        assert value.__name__ == name and inspect.getdoc(value), name
    for name in JOBS:
        doc = inspect.getdoc(getattr(deepsets, name))
        assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc, name
    from deepsets.pipelines.config import RunConfig
    from deepsets.pipelines.embedding.job import EmbedConfig
    from deepsets.pipelines.tuning.config import TuneConfig

    assert deepsets.RunConfig is RunConfig and deepsets.EmbedConfig is EmbedConfig  # the CLI's own types
    assert deepsets.TuneConfig is TuneConfig
    with pytest.raises(AttributeError, match="module 'deepsets' has no attribute 'run_training'"):
        deepsets.run_training  # noqa: B018 - the lookup is the test


def test_import_deepsets_loads_no_heavy_package():
    code = (
        "import sys, deepsets; from deepsets import builders; "
        "print(sorted(m for m in ('ray', 'mlflow', 'polars', 'pyarrow', 'pandas', 'deepsets.pipelines', 'deepsets.features') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the model library needs torch only
    code = "import sys, deepsets; print(sorted(m for m in ('torch', 'ray', 'mlflow', 'polars', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fit_on_the_demo_data(demo_data, demo_spec, tmp_path):
    from deepsets.pipelines.errors import JobError

    out = tmp_path / "spec.json"
    spec = deepsets.fit(schema=demo_data / "schema.toml", inputs=demo_data / "train", out=out)
    assert spec.names == demo_spec.names  # demo_spec: FeatureSpec.fit without the validation pass
    assert {n: s["rows"] for n, s in spec.stats().items()} == {n: 3000 for n in spec.names}  # every train row was read
    assert json.loads(out.read_text()) == json.loads(json.dumps(spec.to_dict()))
    assert deepsets.FeatureSpec.load(out).stats() == spec.stats()
    with pytest.raises(JobError, match="already exists: pass --overwrite"):
        deepsets.fit(
            deepsets.FitConfig(schema=str(demo_data / "schema.toml"), inputs=[str(demo_data / "train")], out=str(out))
        )
    again = deepsets.fit(
        schema=deepsets.load_schema(demo_data / "schema.toml"),  # a schema built in code
        inputs=[demo_data / "train"],
        out=out,
        overwrite=True,
        validate=False,
    )
    assert again.stats() == demo_spec.stats()
    in_memory = deepsets.fit(schema=demo_data / "schema.toml", inputs=demo_data / "train", validate=False)
    assert in_memory.stats() == demo_spec.stats()  # out left out: the spec stays in memory


def test_job_functions_take_a_config_or_its_fields_not_both(tmp_path):
    from deepsets.pipelines.errors import ConfigError

    cfg = deepsets.EmbedConfig(
        model="models:/m-1", inputs=[str(tmp_path)], output=str(tmp_path / "emb"), resume=True, overwrite=True
    )
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        deepsets.embed(cfg)  # the typed config is checked as the command checks its options
    with pytest.raises(TypeError, match="not both"):
        deepsets.ablate(deepsets.AblateConfig(model="m", inputs=["x"]), out="y")
    with pytest.raises(ConfigError, match="k"):
        deepsets.retrieve(items="a", queries="b", k=0, out="c")
    with pytest.raises(ConfigError, match="trials: Input should be greater than or equal to 1"):
        deepsets.tune(config=tmp_path / "run.toml", trials=0)
