"""The three layer folders install under the one import name ``deepsets`` (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"deepsets": "deepsets", "features": "deepsets.features", "pipelines": "deepsets.pipelines"}


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    expected = set()
    for folder, import_name in LAYERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join((import_name, *parts)))
    assert set(config["packages"]) == expected
    assert config["package-dir"] == {name: folder for folder, name in LAYERS.items()}


def test_no_top_level_features_or_pipelines_import_name(tmp_path):
    """Run outside the repository: only ``deepsets`` is installed, ``features`` and ``pipelines`` are not."""
    code = (
        "import importlib.util as u, deepsets.features.spec, deepsets.pipelines.cli; "
        "print(u.find_spec('features'), u.find_spec('pipelines'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
