"""MkDocs hook: the pages generated from the code, and the repository files the site shows.

- ``reference/config.md`` and ``reference/cli.md`` are rendered from the pydantic models and the
  argparse parsers at every build (:mod:`config_reference`, :mod:`cli_reference`), so they
  cannot drift from the code.
- Markdown files outside ``docs/`` that the pages link to (``benchmarks/RESULTS.md``) become site
  pages, and the links pointing at them (``../benchmarks/RESULTS.md``, which work on a plain
  checkout) are pointed at those pages. Any other link leaving ``docs/`` is left for MkDocs to
  report, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import cli_reference
import config_reference
from mkdocs.structure.files import File, Files

MIRRORED = {"benchmarks/RESULTS.md": "results.md"}
"""``{repository path: site page}`` of the Markdown files outside docs/ the site shows."""

GENERATED = {"reference/config.md": config_reference.render, "reference/cli.md": cli_reference.render}
"""``{site page: the function that renders it}``."""

_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")


def on_files(files: Files, config) -> Files:
    """Add the generated reference pages and the mirrored repository files."""
    for uri, render in GENERATED.items():
        files.append(File.generated(config, uri, content=render()))
    root = Path(config["docs_dir"]).parent
    for source, uri in MIRRORED.items():
        files.append(File.generated(config, uri, abs_src_path=str(root / source)))
    return files


def site_link(page_uri: str, target: str) -> str:
    """``target`` as written in the page ``page_uri`` (a path under docs/), pointed at the site
    page that mirrors it when it leaves docs/ for a mirrored repository file; else unchanged."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return target
    in_repository = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_uri), target))
    mirrored = MIRRORED.get(in_repository)
    if mirrored is None:
        return target
    return posixpath.relpath(mirrored, posixpath.dirname(page_uri) or ".")


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Point links at mirrored repository files to their site pages."""
    uri = page.file.src_uri
    return _LINK.sub(lambda m: m.group(1) + site_link(uri, m.group(2)) + (m.group(3) or "") + m.group(4), markdown)
