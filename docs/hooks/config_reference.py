"""The configuration reference page, rendered from the pydantic models themselves.

Every field's type, default and constraints are read from the model, and its description from
``Field(description=...)`` or, failing that, the comment at the end of the line that declares
it; so the page changes when the code does and never restates a default by hand.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import json
import re
import tokenize
import types
import typing
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

Row = tuple[str, str, str, str]
"""``(field, type, default, description)`` of one table row, already Markdown."""


# -- descriptions --------------------------------------------------------------------------


@cache
def _line_comments(cls: type) -> dict[str, str]:
    """``{field name: its trailing comment}`` for the fields ``cls`` itself declares (type-checker
    pragmas such as ``type: ignore[...]`` and ``noqa`` left out)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            for part in token.string.split("#"):
                part = part.strip()
                if part and not re.match(r"(type:|noqa|pragma)", part):
                    comments.setdefault(token.start[0], []).append(part)
    lines = source.splitlines()
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = re.match(r"^    ([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if not match or match.group(1) in found:
            continue
        # a declaration the formatter wrapped: its comment may sit on a continuation line
        # (indented deeper, or the closing bracket at the field's own indentation)
        end = number
        while end < len(lines) and re.match(r"^(        |    [)\]])", lines[end]):
            end += 1
        said = [part for n in range(number, end + 1) for part in comments.get(n, [])]
        if said:
            found[match.group(1)] = "; ".join(said)
    return found


def field_comment(cls: type, name: str) -> str:
    """The trailing comment of the line declaring ``name`` in ``cls`` or the nearest base class
    that declares it ("" when there is none)."""
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            comment = _line_comments(klass).get(name)
            if comment:
                return comment
    return ""


# -- types, defaults, constraints ---------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: ``"mean" | "max"``, ``list of str``, ``int or unset``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or unset" if type(None) in args else "")
    if origin in (tuple, list):
        if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
            return f"pair of {type_name(args[0])}"
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type):
        if annotation is BaseModel:  # InstanceOf[BaseModel]: an object a Python caller passes
            return "model object (from Python)"
        if issubclass(annotation, BaseModel):
            return "table (see the kinds below)"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def toml_value(value: Any) -> str:
    """A default as it is written in TOML."""
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


_BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)


def constraints(metadata: Iterable[Any], text: bool = False) -> list[str]:
    """``[">= 1", "<= 64", "at least 1 item"]`` from a field's (or its type's) metadata
    (``text``: a string field, whose smallest length 1 reads "not empty")."""
    out: list[str] = []
    for item in metadata:
        for bound, attribute, sign in _BOUNDS:
            if isinstance(item, bound):
                out.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length == 1 and text:
            out.append("not empty")
        elif isinstance(item, annotated_types.MinLen) and item.min_length:
            out.append(f"at least {item.min_length} " + ("item" if item.min_length == 1 else "items"))
        if getattr(item, "pattern", None):
            out.append(f"matches `{item.pattern}`")
    return out


def _annotated_metadata(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return list(typing.get_args(annotation)[1:])
    return []


def model_rows(
    cls: type[BaseModel],
    fallback: Callable[[str], str] = lambda name: "",
    skip: tuple[str, ...] = (),
    first: tuple[str, ...] = (),
    written: dict[str, str] | None = None,
) -> list[Row]:
    """One row per field of ``cls``: name, type, default (``required`` when it has none) and
    description (``Field(description=)``, else the line's comment, else ``fallback(name)``);
    the fields named in ``first`` lead. ``written``: only these fields, each under the name it
    is written with in the file."""
    rows: list[Row] = []
    fields = sorted(cls.model_fields.items(), key=lambda item: item[0] not in first)
    for name, info in fields:
        if name in skip or (written is not None and name not in written):
            continue
        if info.default is not PydanticUndefined:
            default = f"`{toml_value(info.default)}`"
        elif info.default_factory is not None:
            default = f"`{toml_value(info.default_factory())}`"
        else:
            default = "required"
        limits = constraints([*info.metadata, *_annotated_metadata(info.annotation)], text=_is_text(info.annotation))
        described = info.description or field_comment(cls, name) or fallback(name)
        text = "; ".join(p for p in (_escape(described), ", ".join(limits)) if p)
        shown = (written or {}).get(name) or info.alias or name
        rows.append((f"`{shown}`", _enum_name(info.metadata) or type_name(info.annotation), default, text))
    return rows


def _enum_name(metadata: Iterable[Any]) -> str:
    """The choices of a string validated against a registry (``WithJsonSchema({"enum": [...]})``), or ""."""
    for item in metadata:
        choices = (getattr(item, "json_schema", None) or {}).get("enum")
        if choices:
            return " \\| ".join(json.dumps(c) for c in choices)
    return ""


def _is_text(annotation: Any) -> bool:
    """A string, or an optional string."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(_is_text(a) for a in typing.get_args(annotation) if a is not type(None))
    return annotation is str


def dataclass_rows(cls: type, skip: tuple[str, ...] = ()) -> list[Row]:
    """One row per field of a dataclass (defaults and trailing comments as for :func:`model_rows`)."""
    rows: list[Row] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = "required" if f.default is dataclasses.MISSING else f"`{toml_value(f.default)}`"
        rows.append(
            (
                f"`{f.name}`",
                type_name(f.type if not isinstance(f.type, str) else _resolve(cls, f.name)),
                default,
                _escape(field_comment(cls, f.name)),
            )
        )
    return rows


def _resolve(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows: list[Row]) -> str:
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {name} | {kind} | {default} | {text} |" for name, kind, default, text in rows]
    return "\n".join(lines)


def doc(obj: Any) -> str:
    """An object's docstring, first paragraph only, reST literals turned into Markdown code."""
    text = inspect.cleandoc(obj.__doc__ or "").split("\n\n")[0]
    return re.sub(
        r"``([^`]+)``", r"`\1`", re.sub(r":(?:class|func|mod|meth):`~?([^`]+)`", r"`\1`", " ".join(text.split()))
    )


# -- the page ------------------------------------------------------------------------------


def run_config_section() -> str:
    from deepsets.model_args import ModelArgs
    from deepsets.pipelines.config.checks import MODEL_LOCATIONS
    from deepsets.pipelines.config.sections import (
        REQUIRED_SECTIONS,
        SECTIONS,
        RunConfig,
    )

    def located(section: str) -> dict[str, str]:
        """The ``ModelArgs`` fields written in ``section``, by the name they are written with."""
        return {f: w.split(".")[1] for f, w in MODEL_LOCATIONS.items() if w.split(".")[0] == section}

    parts = [
        "## The run config (`deepsets train`, `deepsets tune`)",
        "",
        doc(RunConfig),
        "",
        "One TOML file, one table per section. Sections "
        + ", ".join(f"`[{s}]`" for s in REQUIRED_SECTIONS)
        + " are required; every other section, and every field with a default, may be left out. "
        "Relative paths are relative to the file's folder. `--set section.field=value` overrides any field.",
        "",
    ]
    for name, cls in SECTIONS.items():
        rows = model_rows(ModelArgs, written=located(name)) if name in ("model", "task") else []
        rows += [] if name == "model" else model_rows(cls)
        parts += [f"### `[{name}]`", "", doc(cls), "", table(rows), ""]
    return "\n".join(parts)


def modality_section() -> str:
    from deepsets.features.kinds import feature_class, feature_kinds
    from deepsets.features.kinds.base import BaseFeature
    from deepsets.features.schema import FeatureSchema

    parts = [
        "## The schema (`schema.toml`, or inline under `[schema]`)",
        "",
        doc(FeatureSchema),
        "",
        table(model_rows(FeatureSchema)),
        "",
        "Each `[[modality]]` table has a `kind`; the fields each kind takes:",
        "",
    ]
    for kind in feature_kinds():
        cls = feature_class(kind)
        parts += [
            f'### `kind = "{kind}"`',
            "",
            doc(cls),
            "",
            table(model_rows(cls, skip=("kind",), first=tuple(BaseFeature.model_fields))),
            "",
        ]
    return "\n".join(parts)


def job_sections() -> str:
    from deepsets.pipelines.ablation.config import AblateConfig
    from deepsets.pipelines.embedding.config import EmbedConfig
    from deepsets.pipelines.fitting import FitConfig
    from deepsets.pipelines.init.config import InitConfig
    from deepsets.pipelines.retrieval.config import RetrieveConfig
    from deepsets.pipelines.tuning.config import TuneConfig

    parts = [
        "## Job options",
        "",
        (
            "The options of the jobs, as validated before anything runs, on the command line and in the "
            "Python API alike. The command line's flags are built from these fields: the flag is the field's "
            "name with `-` for `_` (`inputs` is `--input`, `id_column` is `--id`, `overrides` the repeatable "
            "`--set`, and `log_mlflow` the switch `--no-mlflow`), its default and help the field's; see the "
            "[command line reference](cli.md)."
        ),
        "",
    ]
    jobs = (("init", InitConfig), ("fit", FitConfig), ("tune", TuneConfig))
    for command, cls in jobs + (("embed", EmbedConfig), ("ablate", AblateConfig), ("retrieve", RetrieveConfig)):
        parts += [
            f"### `deepsets {command}`",
            "",
            doc(cls),
            "",
            table(model_rows(cls)),
            "",
        ]
    return "\n".join(parts)


def tune_section() -> str:
    from deepsets.pipelines.tuning import space

    params = "\n".join(f"| `{key}` | `{toml_value(value)}` |" for key, value in space.DEFAULT_PARAMS.items())
    return "\n".join(
        [
            "## The search space (`deepsets tune --space`)",
            "",
            doc(space),
            "",
            table(dataclass_rows(space.SearchSpace, skip=("params",))),
            "",
            (
                f'`[params]`: one entry per searched run-config field, `"section.field" = ...`, each a list of choices or '
                f"{', '.join(f'`{{{d} = [...]}}`' for d in space.DISTRIBUTIONS)} (`uniform` and `loguniform` take "
                "`[low, high]`). Without `--space` the search uses:"
            ),
            "",
            "| key | values |",
            "|---|---|",
            params,
            "",
        ]
    )


def render() -> str:
    """The whole configuration reference page, as Markdown."""
    return "\n".join(
        [
            "# Configuration reference",
            "",
            (
                "Generated from the code at build time: every field, type, default and constraint below is read from the "
                "pydantic models that validate the files, so it cannot go stale. Worked examples: the files under "
                "`configs/` in the repository ([Example configs](../examples.md))."
            ),
            "",
            run_config_section(),
            modality_section(),
            tune_section(),
            job_sections(),
        ]
    )
