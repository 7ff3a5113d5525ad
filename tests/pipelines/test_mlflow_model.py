"""The MLflow packaging end to end: log in a run, load as pyfunc, embed real recsys-6 rows."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

mlflow = pytest.importorskip("mlflow")

from deepsets.builders import build_model  # noqa: E402
from deepsets.features import synth  # noqa: E402
from deepsets.features.schema import load_schema  # noqa: E402
from deepsets.features.spec import FeatureSpec  # noqa: E402
from deepsets.model_args import ModelArgs  # noqa: E402
from deepsets.pipelines.models.pyfunc import embed_table, load_deepsets_model, log_deepsets_model  # noqa: E402

CONFIG = ModelArgs(dim=16, heads=2, fusion="transformer", fusion_layers=1)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tiny workload, one model, logged once in a run of a throwaway sqlite store."""
    tmp = tmp_path_factory.mktemp("mlflow_model")
    summary = synth.generate(300, tmp / "data", seed=1, progress=False)
    spec = FeatureSpec.fit(load_schema(tmp / "data" / "schema.toml"), tmp / "data")
    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), CONFIG).eval()
    table = pq.read_table(tmp / "data" / summary["files"][0])
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri also sets this variable
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    experiment = mlflow.create_experiment("deepsets-test", artifact_location=(tmp / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = log_deepsets_model(model, spec, CONFIG)
    yield {"uri": uri, "model": model, "spec": spec, "table": table, "run": run, "tmp": tmp}
    mlflow.set_tracking_uri(previous)  # None unsets it again


@pytest.fixture(scope="module")
def served(logged):
    return mlflow.pyfunc.load_model(logged["uri"])


def reference(logged, output="fused"):
    with torch.no_grad():
        out = logged["model"](logged["spec"].transform(logged["table"]))
    return getattr(out, output).numpy()


def test_pyfunc_embeds_a_parquet_frame_like_the_model(logged, served):
    frame = logged["table"].to_pandas()  # list columns of numpy arrays, frames nested
    out = served.predict(frame, params={"batch_size": 64})  # 300 rows: 5 batches
    assert list(out.columns) == ["item_id", "embedding"]
    assert out["item_id"].tolist() == frame["item_id"].tolist()
    embeddings = np.stack(out["embedding"].to_list())
    assert embeddings.dtype == np.float32 and embeddings.shape == (300, 16)
    np.testing.assert_allclose(embeddings, reference(logged), atol=1e-5)


def test_pyfunc_logits_and_arrow_input(logged, served):
    out = served.predict(logged["table"], params={"output": "logits"})  # a pyarrow Table
    assert list(out.columns) == ["item_id", "logits"]
    np.testing.assert_allclose(np.stack(out["logits"].to_list()), reference(logged, "logits"), atol=1e-5)


def test_model_is_linked_to_the_run_and_needs_deepsets(logged):
    model_id = logged["uri"].removeprefix("models:/")
    assert mlflow.get_logged_model(model_id).source_run_id == logged["run"].info.run_id
    # (MLflow 3: "models:/<id>/requirements.txt" is read as a registered name + version, so
    # download the whole model)
    local = mlflow.artifacts.download_artifacts(logged["uri"], dst_path=str(logged["tmp"] / "download"))
    requirements = open(os.path.join(local, "requirements.txt")).read().split()
    assert any(r.startswith("deepsets") for r in requirements)
    assert not [f for f in os.listdir(local) if f.endswith(".pkl")]  # nothing pickled


def test_load_deepsets_model_round_trip(logged):
    model, spec, args = load_deepsets_model(logged["uri"])
    assert args == CONFIG and not model.training
    assert spec.to_dict() == logged["spec"].to_dict()
    ours, theirs = logged["model"].state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    frame = embed_table(model, spec, logged["table"].slice(0, 10))
    np.testing.assert_allclose(np.stack(frame["embedding"].to_list()), reference(logged)[:10], atol=1e-5)


def test_empty_input_gives_empty_frame(logged, served):
    out = served.predict(logged["table"].slice(0, 0).to_pandas())
    assert list(out.columns) == ["item_id", "embedding"] and len(out) == 0
    out = served.predict(logged["table"].slice(0, 0), params={"output": "logits"})
    assert list(out.columns) == ["item_id", "logits"] and len(out) == 0


def test_all_missing_columns_in_a_small_frame(logged, served):
    """pandas cannot type a column whose every row is missing (Arrow says ``null``): rows where
    frames and history are all absent must still embed like the model does."""
    frame = logged["table"].to_pandas()
    rows = frame.index[frame["frames"].isna() & frame["history"].isna()][:3]
    assert len(rows) > 0
    out = served.predict(frame.loc[rows].reset_index(drop=True))
    np.testing.assert_allclose(np.stack(out["embedding"].to_list()), reference(logged)[rows], atol=1e-5)


def test_bad_params_and_input(served, logged):
    with pytest.raises(ValueError, match="output must be one of"):
        served.predict(logged["table"], params={"output": "nope"})
    with pytest.raises(TypeError, match="pandas DataFrame or a pyarrow Table"):
        served.predict({"image": [[0.0]]})


def test_log_refuses_bad_config_and_no_run(logged):
    model, spec = logged["model"], logged["spec"]
    with pytest.raises(ValueError, match="active MLflow run"):
        log_deepsets_model(model, spec, CONFIG)
    with mlflow.start_run(experiment_id=logged["run"].info.experiment_id):
        with pytest.raises(
            ValueError, match=r"do not rebuild these weights: missing \[\], unexpected \[\], reshaped \['"
        ):
            log_deepsets_model(model, spec, CONFIG.replace(dim=8))
        with pytest.raises(ValueError, match=r"do not rebuild these weights: missing \['fusion.head.*layers.1"):
            log_deepsets_model(model.state_dict(), spec, CONFIG.replace(fusion_layers=2))


def test_fresh_process_loads_without_our_imports(logged):
    """A new interpreter that never imported pipelines loads the model from the store alone."""
    code = (
        "import json, sys, mlflow, pyarrow.parquet as pq\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "out = mlflow.pyfunc.load_model(sys.argv[2]).predict(pq.read_table(sys.argv[3]).slice(0, 5).to_pandas())\n"
        "print(json.dumps([[float(x) for x in e] for e in out['embedding']]))\n"
    )
    part = str(logged["tmp"] / "data" / "part-00000.parquet")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code, mlflow.get_tracking_uri(), logged["uri"], part],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]), dtype=np.float32)
    np.testing.assert_allclose(got, reference(logged)[:5], atol=1e-5)


def test_pandas_int_categorical_with_nulls_is_read_as_ints(tmp_path):
    import pyarrow as pa

    from deepsets.features.schema import parse_schema
    from deepsets.pipelines.models.pyfunc import to_arrow

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"level": pa.array([3, None, 7, 3], pa.int64())}), path)
    spec = FeatureSpec.fit(parse_schema({"modality": [{"name": "level", "kind": "categorical"}]}), path)
    frame = pq.read_table(path).to_pandas()
    assert str(frame["level"].dtype) == "float64"  # what pandas does to an int column with nulls
    table = to_arrow(frame, spec)
    assert table.column("level").type == pa.int64()
    batch = spec.transform(table)
    assert batch["level"].values.tolist() == [2, 0, 3, 2] and batch["level"].present.tolist() == [
        True,
        False,
        True,
        True,
    ]
