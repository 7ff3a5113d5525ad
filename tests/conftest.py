"""One Ray session and one small train/valid dataset shared by every test package."""

from __future__ import annotations

import logging
import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """5 train part files and 1 validation file of the reference workload (3,600 rows)."""
    from deepsets.pipelines.demo import make_demo_data

    data_dir = tmp_path_factory.mktemp("data") / "recsys6"
    make_demo_data(data_dir, rows=3600, seed=0, progress=False)
    return data_dir


@pytest.fixture(scope="session")
def demo_spec(demo_data):
    """The feature spec fitted once on ``demo_data/train``."""
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec

    return FeatureSpec.fit(load_schema(demo_data / "schema.toml"), demo_data / "train", validate=False)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server on 127.0.0.1 (moto's ThreadedMotoServer) with a bucket
    ``deepsets``; the AWS variables that point pyarrow, polars and boto3 at it are set for the
    session (and restored after). Yields the endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="deepsets")
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
