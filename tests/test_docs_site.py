"""The docs site builds with ``mkdocs build --strict`` (every page in the nav, every link and anchor
resolving), its reference pages cover every setting the code declares, and every relative link
in README.md reaches a file (and heading) of the repository."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepsets.features.kinds import feature_class, feature_kinds
from deepsets.pipelines.cli import build_parser
from deepsets.pipelines.config.sections import SECTIONS, section_fields

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"


def load_hook_module(name: str):
    """A module of docs/hooks, imported as MkDocs imports it (its folder first on sys.path)."""
    sys.path.insert(0, str(HOOKS))
    try:
        spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", HOOKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(HOOKS))


@pytest.mark.slow
def test_mkdocs_build_strict_passes(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for page in (
        "reference/config/index.html",
        "reference/cli/index.html",
        "serving/index.html",
        "examples/index.html",
        "results/index.html",
    ):
        assert (tmp_path / "site" / page).is_file(), page
    examples = (tmp_path / "site" / "examples" / "index.html").read_text(encoding="utf-8")
    assert "label_columns" in examples and "--8&lt;--" not in examples  # the configs were included, not left as markers


def _env() -> dict:
    import os

    return {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def test_config_reference_lists_every_field_with_its_default():
    page = load_hook_module("config_reference").render()
    for section in SECTIONS:
        assert f"### `[{section}]`" in page
        table = page.split(f"### `[{section}]`")[1].split("###")[0]
        for name, info in section_fields(section).items():
            row = next((line for line in table.splitlines() if line.startswith(f"| `{info.alias or name}` |")), None)
            assert row is not None, f"{section}.{name} missing"
    model = page.split("### `[model]`")[1].split("###")[0]
    assert "| `kind` |" not in model and "| `task` |" not in model  # the model's part of [task] is in [task]
    dim = section_fields("model")["dim"].default
    assert f"| `dim` | int | `{dim}` |" in model  # read from the model, not retyped
    for kind in feature_kinds():
        assert f'### `kind = "{kind}"`' in page
        kind_table = page.split(f'### `kind = "{kind}"`')[1].split("###")[0]
        for name in feature_class(kind).model_fields:
            assert name == "kind" or f"| `{name}` |" in kind_table, f"{kind}.{name} missing"
    jobs = ("init", "fit", "tune", "embed", "ablate", "retrieve")
    for heading in (*(f"### `deepsets {job}`" for job in jobs), "The search space"):
        assert heading in page


def test_run_config_fields_all_have_a_description():
    module = load_hook_module("config_reference")
    for section, cls in SECTIONS.items():
        for name, _, _, text in module.model_rows(cls):
            assert text.strip(), f"{section}.{name.strip('`')}: give it a description (a comment on its line)"


def test_trailing_comments_are_read_and_type_pragmas_dropped():
    module = load_hook_module("config_reference")
    assert module.field_comment(SECTIONS["task"], "negatives").startswith("two_tower:")  # after a type: ignore
    assert "type:" not in module.field_comment(SECTIONS["model"], "pooling")


def test_cli_reference_lists_every_command_and_flag():
    page = load_hook_module("cli_reference").render()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command, command_parser in sub.choices.items():
        section = page.split(f"## `deepsets {command}`")[1].split("\n## ")[0]
        for action in command_parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}`" in section, f"deepsets {command} {flag} missing"
    undocumented = [line for line in page.splitlines() if line.startswith("| `-") and re.search(r"\|\s*\|$", line)]
    assert not undocumented, f"flags without a help text: {undocumented}"
    embed = page.split("## `deepsets embed`")[1].split("\n## ")[0]
    assert "| `--fragment-rows` | `int` | `50000` |" in embed


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs write it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(readme):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / path) if path else ROOT / "README.md"
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", file.read_text(encoding="utf-8"), re.MULTILINE)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"README.md links that lead nowhere: {broken}"
