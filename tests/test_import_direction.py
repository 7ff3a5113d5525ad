"""The three layers import one way: pipelines -> features -> deepsets (docs/layout.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer is a folder of the repository; `features/` and `pipelines/` install as
# `deepsets.features` and `deepsets.pipelines` (pyproject.toml), so the model layer is every other
# module of `deepsets`.
FORBIDDEN = {
    "deepsets": (
        "deepsets.features",
        "deepsets.pipelines",
        "features",
        "pipelines",
        "ray",
        "mlflow",
        "polars",
        "pyarrow",
    ),
    "features": ("deepsets.pipelines", "pipelines", "ray", "mlflow"),
}
TORCH_FREE = (
    "deepsets/kinds.py",
    "deepsets/choices.py",
    "deepsets/fusion_heads.py",
    "deepsets/task_kinds.py",
    "deepsets/model_args.py",
    "deepsets/registry.py",
)


def imported_modules(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == name or module.startswith(name + ".") for name in FORBIDDEN[package]):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_config_facing_modules_are_torch_free():
    for name in TORCH_FREE:
        modules = imported_modules(ROOT / name)
        assert not {m for m in modules if m.split(".")[0] == "torch"}, name
        assert {m for m in modules if m.startswith("deepsets.")} <= {
            "deepsets.choices",
            "deepsets.kinds",
            "deepsets.fusion_heads",
            "deepsets.task_kinds",
            "deepsets.registry",
        }, name


# The command line sits on top of the jobs: no sub-package of `deepsets.pipelines` (the jobs
# `deepsets.pipelines.init`, `deepsets.pipelines.tuning`, ...) imports it, only its own commands.
COMMAND_LINE = ("deepsets.pipelines.cli", "deepsets.pipelines.commands")
JOB_PACKAGES = sorted(
    path.name for path in (ROOT / "pipelines").iterdir() if (path / "__init__.py").exists() and path.name != "commands"
)


@pytest.mark.parametrize("subpackage", JOB_PACKAGES)
def test_pipeline_jobs_never_import_the_command_line(subpackage):
    offenders = []
    for path in sorted((ROOT / "pipelines" / subpackage).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == name or module.startswith(name + ".") for name in COMMAND_LINE):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders
