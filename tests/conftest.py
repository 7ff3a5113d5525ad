"""One Ray session and one small train/valid dataset shared by every test package."""

from __future__ import annotations

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
    from pipelines.demo import make_demo_data

    data_dir = tmp_path_factory.mktemp("data") / "recsys6"
    make_demo_data(data_dir, rows=3600, seed=0, progress=False)
    return data_dir


@pytest.fixture(scope="session")
def demo_spec(demo_data):
    """The feature spec fitted once on ``demo_data/train``."""
    from features.schema import load_schema
    from features.spec import FeatureSpec

    return FeatureSpec.fit(load_schema(demo_data / "schema.toml"), demo_data / "train", validate=False)

