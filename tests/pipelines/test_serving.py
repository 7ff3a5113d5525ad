"""Serving: ``mlflow models serve --env-manager local`` answers ``/invocations`` with the
model's embeddings and logits, as docs/serving.md says."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.builders import build_model
from deepsets.model_args import ModelArgs
from deepsets.pipelines.models.pyfunc import log_deepsets_model

ARGS = ModelArgs(dim=16, heads=2, fusion="transformer", fusion_layers=1, task="binary", num_outputs=1)
START_TIMEOUT_S = 240  # the server imports torch and MLflow and loads the model; slow on a busy machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def wait_until_up(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"mlflow models serve exited with {server.returncode}:\n{server.stdout.read()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not answer /ping within {START_TIMEOUT_S} s")


def stop(server: subprocess.Popen) -> None:
    """End the server and the uvicorn process it started (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory, demo_data, demo_spec):
    """A binary model over the demo spec, logged with ``log_deepsets_model`` (what ``deepsets
    train`` logs) into a throwaway sqlite store; the torch model kept for reference outputs."""
    tmp = tmp_path_factory.mktemp("serving")
    store = f"sqlite:///{tmp}/mlflow.db"
    torch.manual_seed(0)
    model = build_model(demo_spec.model_inputs(), ARGS).eval()
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri also sets this variable
    mlflow.set_tracking_uri(store)
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(tmp / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            uri = log_deepsets_model(model, demo_spec, ARGS)
    finally:
        mlflow.set_tracking_uri(previous)
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
    return {"uri": uri, "store": store, "model": model}


@pytest.mark.slow
def test_mlflow_models_serve_answers_embeddings_and_logits(logged_model, demo_data, demo_spec):
    if shutil.which("uvicorn", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("uvicorn, which mlflow models serve runs, is not installed beside this Python")
    table = pq.read_table(min((demo_data / "valid").glob("*.parquet"))).slice(0, 2)
    rows = table.to_pylist()  # two rows, list columns as JSON lists, missing modalities as null
    with torch.no_grad():
        out = logged_model["model"](demo_spec.transform(table))
    port = free_port()
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=logged_model["store"],
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            logged_model["uri"],
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_up(server, port)
        url = f"http://127.0.0.1:{port}/invocations"
        embedded = post(url, {"dataframe_records": rows})["predictions"]
        scored = post(url, {"dataframe_records": rows, "params": {"output": "logits", "batch_size": 1}})["predictions"]
    finally:
        stop(server)
    assert [r["item_id"] for r in embedded] == table.column("item_id").to_pylist()
    assert [len(r["embedding"]) for r in embedded] == [ARGS.dim, ARGS.dim]
    np.testing.assert_allclose(np.array([r["embedding"] for r in embedded]), out.fused.numpy(), rtol=1e-4, atol=1e-5)
    assert [r["item_id"] for r in scored] == table.column("item_id").to_pylist()
    assert [len(r["logits"]) for r in scored] == [1, 1]  # binary: a one-element array per row
    np.testing.assert_allclose(np.array([r["logits"] for r in scored]), out.logits.numpy(), rtol=1e-4, atol=1e-5)
