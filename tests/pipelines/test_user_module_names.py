"""A user's own ``features.py`` and ``pipelines/`` beside their job never shadow deepsets' modules.

Both folders of the repository install under ``deepsets`` (``deepsets.features``,
``deepsets.pipelines``), so the names ``features`` and ``pipelines`` stay the user's. The jobs run
from a working folder holding both, with ``python -m`` (which puts that folder first on the
driver's path, as a notebook does) and with Ray workers that inherit the driver's path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepsets.pipelines.demo import default_demo_config, make_demo_data

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
CLASH = "raise ImportError(\"the user's own {name} was imported instead of deepsets' module\")\n"


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A working folder with a clashing ``features.py``, ``pipelines/`` package, and a small
    data set plus run config of the reference workload."""
    folder = tmp_path_factory.mktemp("user_project")
    (folder / "features.py").write_text(CLASH.format(name="features.py"))
    (folder / "pipelines").mkdir()
    (folder / "pipelines" / "__init__.py").write_text(CLASH.format(name="pipelines/"))
    make_demo_data(folder / "data", rows=1200, seed=2, progress=False)
    cfg = default_demo_config(folder / "data", workers=1)
    cfg = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"dim": 16}),
            "training": cfg.training.model_copy(update={"epochs": 1, "batch_size": 200}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": "beside-user-code",
                    "storage_path": str(folder / "ray"),
                    "mlflow_uri": f"sqlite:///{folder}/mlflow.db",
                }
            ),
        }
    )
    (folder / "run.toml").write_text(cfg.to_toml())
    return folder


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_the_users_modules_really_clash_by_name(user_folder):
    """The folder's own modules are importable there: what the jobs below must not pick up."""
    done = run_in(user_folder, "-c", "import features")
    assert done.returncode != 0 and "the user's own features.py" in done.stderr


def test_train_and_embed_run_from_a_folder_with_features_py_and_pipelines(ray_session, user_folder):
    address = ray_session.get_runtime_context().gcs_address
    trained = run_in(
        user_folder, "-m", "deepsets.pipelines.cli", "train", "--config", "run.toml", "--ray-address", address, "--json"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["epochs_done"] == 1 and summary["model_uri"].startswith("models:/")

    embedded = run_in(
        user_folder,
        "-m",
        "deepsets.pipelines.cli",
        "embed",
        "--model",
        summary["model_uri"],
        "--input",
        "data/valid",
        "--output",
        "embeddings",
        "--workers",
        "1",
        "--ray-address",
        address,
        "--json",
    )
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    result = json.loads(embedded.stdout.strip().splitlines()[-1])
    assert result["rows_out"] == 200 and result["rows_rejected"] == 0  # 1/6 of 1,200 rows is validation


def test_the_notebooks_imports_work_from_that_folder(user_folder):
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    lines = [line.strip() for cell in cells for line in cell["source"]]
    imports = [line for line in lines if line.startswith(("from deepsets", "import deepsets"))]
    public = sorted({m for line in lines for m in re.findall(r"\bdeepsets\.([A-Za-z_]+)\(", line)})
    assert len(imports) >= 5 and {"fit", "train", "embed", "ablate"} <= set(public), (imports, public)
    uses = [f"deepsets.{name}" for name in public]  # the public API names resolve too
    done = run_in(
        user_folder, "-c", "\n".join([*imports, "import deepsets", *uses])
    )  # `python -c` puts the folder first on sys.path, like a notebook
    assert done.returncode == 0, done.stderr[-3000:]
