"""The same commands on a two-node Ray cluster with everything on object storage.

Three real servers on 127.0.0.1: an S3-compatible store (``s3_server``: moto over HTTP), an
MLflow tracking server whose artifacts go to that store, and a Ray cluster of two nodes
(``ray.cluster_utils.Cluster``: a head and a second node, one CPU each, so a job with two
workers must use both). ``deepsets fit``, ``train``, ``embed`` and ``ablate`` run as a user runs
them, as subprocesses, from an empty working directory, with every path an ``s3://`` URI: the
data (its local copy is deleted before the first command), the schema, the spec, the
checkpoints, the embeddings, the ablation tables and the MLflow model. The commands are the
docs/cluster.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest

from deepsets.features import storage
from deepsets.pipelines.config import parse_run_config
from deepsets.pipelines.demo import make_demo_data

BUCKET = "s3://deepsets/cluster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(s3_server, tmp_path_factory):
    """``mlflow server``: runs in a sqlite store of its own, artifacts written by the clients to S3."""
    home, port = tmp_path_factory.mktemp("mlflow-server"), free_port()
    log = open(home / "server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{home}/mlflow.db",
            "--default-artifact-root",
            f"{BUCKET}/mlflow-default",
            "--no-serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)
    else:
        raise RuntimeError("mlflow server did not start in 60 s")
    yield uri
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def two_nodes(s3_server):
    """A Ray head and a second node (one CPU each) that inherit the S3 settings."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()


@pytest.fixture(scope="module")
def s3_data(s3_server, tmp_path_factory):
    """The reference workload (2,400 rows) uploaded to S3; the local copy is deleted."""
    local = tmp_path_factory.mktemp("upload") / "recsys6"
    make_demo_data(local, rows=2400, seed=1, progress=False)
    for path in sorted(local.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            storage.write_bytes(storage.join(f"{BUCKET}/data", *path.relative_to(local).parts), path.read_bytes())
    rows = sum(pq.read_metadata(p).num_rows for p in (local / "valid").glob("*.parquet"))
    shutil.rmtree(local)
    return {"valid_rows": rows}


def deepsets(workdir, mlflow_uri, *args) -> dict:
    """Run ``deepsets ARGS --json`` as a user would; its summary. Ray Data is told to wait for
    every actor of the embed pool before handing out fragments: otherwise the first actor up
    may embed all of this small job before the other node's actor has loaded the model."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300",
    }
    done = subprocess.run(
        [sys.executable, "-m", "deepsets.pipelines.cli", *args, "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fit_train_embed_and_ablate_on_two_nodes_with_everything_on_s3(s3_data, two_nodes, mlflow_server, tmp_path):
    workdir = tmp_path / "empty"
    workdir.mkdir()
    fitted = deepsets(
        workdir,
        mlflow_server,
        "fit",
        "--schema",
        f"{BUCKET}/data/schema.toml",
        "--input",
        f"{BUCKET}/data/train",
        "--out",
        f"{BUCKET}/spec.json",
    )
    assert storage.is_file(f"{BUCKET}/spec.json") and fitted

    config = parse_run_config(
        {
            "data": {
                "train": f"{BUCKET}/data/train",
                "valid": f"{BUCKET}/data/valid",
                "spec": f"{BUCKET}/spec.json",
                "label_columns": ["clicked"],
            },
            "schema": {"path": f"{BUCKET}/data/schema.toml"},
            "model": {"dim": 32, "layers": 0, "heads": 4, "fusion": "transformer"},
            "task": {"kind": "binary", "num_outputs": 1},
            "training": {"epochs": 2, "batch_size": 200, "lr": 3e-3},
            "scaling": {"workers": 2},
            "tracking": {
                "experiment": "cluster",
                "run_name": "on-two-nodes",
                "storage_path": f"{BUCKET}/ray",
                "artifact_location": f"{BUCKET}/mlflow",
            },
        },
        "<test>",
    )
    (workdir / "run.toml").write_text(config.to_toml())
    trained = deepsets(workdir, mlflow_server, "train", "--config", "run.toml", "--ray-address", two_nodes)
    assert trained["metrics"]["ray_nodes"] == 2  # one worker per node
    assert trained["checkpoint"].startswith(f"{BUCKET}/ray/on-two-nodes/checkpoint_")
    assert storage.is_file(storage.join(trained["checkpoint"], "model_config.json"))
    assert {"run.json", "spec.json"} <= {name for name, _ in storage.children(f"{BUCKET}/ray/on-two-nodes")}
    logged = storage.files_under(f"{BUCKET}/mlflow", "")
    assert any(p.endswith("/spec.json") for p in logged) and any(p.endswith("/config.toml") for p in logged)
    assert any(p.endswith(".pt") or p.endswith("MLmodel") for p in logged), logged  # the model's files, from S3

    embedded = deepsets(
        workdir,
        mlflow_server,
        "embed",
        "--model",
        trained["model_uri"],
        "--input",
        f"{BUCKET}/data/valid",
        "--output",
        f"{BUCKET}/embeddings",
        "--workers",
        "2",
        "--fragment-rows",
        "150",
        "--ray-address",
        two_nodes,
    )
    assert embedded["ray_nodes"] == 2
    assert embedded["rows_in"] == s3_data["valid_rows"] == embedded["rows_out"] + embedded["rows_rejected"]
    parts = [name for name, _ in storage.children(f"{BUCKET}/embeddings/embeddings")]
    assert len(parts) == embedded["fragments"] and all(
        name.startswith("part-") for name in parts
    )  # no temp object left
    assert json.loads(storage.read_text(f"{BUCKET}/embeddings/_SUCCESS.json"))["rows_out"] == embedded["rows_out"]
    resumed = deepsets(
        workdir,
        mlflow_server,
        "embed",
        "--model",
        trained["model_uri"],
        "--input",
        f"{BUCKET}/data/valid",
        "--output",
        f"{BUCKET}/embeddings",
        "--workers",
        "2",
        "--fragment-rows",
        "150",
        "--resume",
        "--ray-address",
        two_nodes,
    )
    assert resumed["rows_this_run"] == 0 and resumed["rows_out"] == embedded["rows_out"]

    ablated = deepsets(
        workdir,
        mlflow_server,
        "ablate",
        "--model",
        trained["model_uri"],
        "--input",
        f"{BUCKET}/data/valid",
        "--methods",
        "loo,only",
        "--bootstrap",
        "0",
        "--out",
        f"{BUCKET}/ablation",
    )
    assert ablated["files"]["table_parquet"] == f"{BUCKET}/ablation/ablation.parquet"
    assert {"ablation.parquet", "ablation.md", "ablation.png", "ablation.json"} <= {
        n for n, _ in storage.children(f"{BUCKET}/ablation")
    }
    assert any("/ablation/" in p for p in storage.files_under(f"{BUCKET}/mlflow", ""))  # logged beside the model, on S3

    assert sorted(p.name for p in workdir.iterdir()) == ["run.toml"]  # nothing was written on the driver's disk
