"""Reading a run config: the TOML file, ``--set`` overrides, paths made absolute, and every
problem of every section collected into one :class:`deepsets.pipelines.errors.ConfigError`.

**Paths.** Relative paths in the file (``data.train``, ``data.valid``, ``data.spec``,
``schema.path``) are relative to the directory of the config file, so a config travels with its
data. Paths given on the command line (``--set data.train=other/``) are relative to the working
directory, like any other command-line path. ``tracking.storage_path`` is relative to the working
directory. All of them are made absolute when the config is loaded (Ray workers do not share the
driver's working directory); URIs (``s3://...``) are left alone.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from pydantic import BaseModel, ValidationError

from deepsets.features.errors import SchemaError, describe_problem, location, unknown_name
from deepsets.features.schema import parse_schema
from deepsets.model_args import ModelArgs
from deepsets.pipelines.config.checks import FIELD_AT, MODEL_LOCATIONS, run_problems, schema_source_problem
from deepsets.pipelines.config.sections import REQUIRED_SECTIONS, SECTIONS, RunConfig, SchemaConfig, section_fields
from deepsets.pipelines.errors import ConfigError


def _validate_section(
    section: str, cls: type[BaseModel], raw: Any
) -> Tuple[Optional[BaseModel], List[str], Dict[str, Any]]:
    """Validate one section; return it (or None), its problems, and its valid field values."""
    if not isinstance(raw, dict):
        return None, [f"{section}: must be a table [{section}] (found {raw!r})"], {}
    fields = list(section_fields(section))
    try:
        sub = cls.model_validate(raw)
        return sub, [], {f"{section}.{k}": v for k, v in sub.__dict__.items()}
    except ValidationError as err:
        problems = [f"{location((section,) + tuple(e['loc']))}: {describe_problem(e, fields)}" for e in err.errors()]
        bad = {e["loc"][0] for e in err.errors() if e["loc"]}
    # Keep the fields that are fine on their own, so cross-field checks still run on them.
    try:
        partial = cls.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:  # a required field is among the bad ones
        return None, problems, {}
    return None, problems, {f"{section}.{k}": v for k, v in partial.__dict__.items() if k not in bad}


def _validate_model_settings(model: Any, task: Any) -> Tuple[Optional[ModelArgs], List[str], Dict[str, Any]]:
    """The model settings, written in ``[model]`` and in ``[task]`` (``kind``, ``num_outputs``,
    the towers), as one :class:`ModelArgs` with each field checked (its rules across fields run
    with the config's other checks); its problems and its valid values by location."""
    problems: List[str] = []
    settings: Dict[str, Any] = {}
    if not isinstance(model, dict):
        problems.append(f"model: must be a table [model] (found {model!r})")
    for section, table in (("model", model), ("task", task)):
        if not isinstance(table, dict):
            continue  # [task] is reported with its section
        for key, value in table.items():
            where = f"{section}.{key}"
            if where in FIELD_AT:
                settings[FIELD_AT[where]] = value
            elif section == "model":
                problems.append(f"{where}: " + unknown_name(key, list(section_fields("model")), "field"))
    try:
        checked = ModelArgs.check_fields(settings)
        return (None if problems else checked), problems, {MODEL_LOCATIONS[k]: v for k, v in checked}
    except ValidationError as err:
        bad = {e["loc"][0] for e in err.errors() if e["loc"]}
        for e in err.errors():
            section, name = MODEL_LOCATIONS[e["loc"][0]].split(".")
            problems.append(f"{location((section, name) + tuple(e['loc'][1:]))}: {describe_problem(e)}")
    valid = ModelArgs.check_fields({k: v for k, v in settings.items() if k not in bad})
    return (
        None,
        problems,
        {where: getattr(valid, field) for field, where in MODEL_LOCATIONS.items() if field not in bad},
    )


def _validate_schema_section(raw: Any) -> Tuple[Optional[SchemaConfig], List[str]]:
    """``[schema]``: exactly one of path / inline tables; inline ones checked by parse_schema."""
    if not isinstance(raw, dict):
        return None, [f"schema: must be a table [schema] (found {raw!r})"]
    problems: List[str] = []
    for key in raw:
        if key not in SchemaConfig.model_fields:
            problems.append(f"schema.{key}: " + unknown_name(key, list(SchemaConfig.model_fields), "field"))
    has_path, has_inline = "path" in raw, "id_column" in raw or "modality" in raw
    source = schema_source_problem(has_path, has_inline)
    if source:
        problems.append(f"schema: {source}")
    path = raw.get("path")
    if has_path and not (isinstance(path, str) and path):
        problems.append(f"schema.path: must be a non-empty string (found {path!r})")
    inline = None
    if has_inline:
        try:
            inline = parse_schema({k: raw[k] for k in ("id_column", "modality") if k in raw}, "schema")
        except SchemaError as err:
            for p in err.problems:  # 'modality[2] (tags).max_len: ...' -> 'schema.modality[2] ...'
                top = p.startswith("(top level)")
                problems.append("schema" + p.removeprefix("(top level)") if top else f"schema.{p}")
    if problems:
        return None, problems
    if inline is not None:
        return SchemaConfig(id_column=inline.id_column, modality=tuple(inline.modality)), []
    return SchemaConfig(path=path), []


def _validate(raw: Any, source: str, overrides: Mapping[str, str] = {}) -> RunConfig:
    """Validate a whole config dict, collecting every problem; ``overrides`` maps the
    ``section.field`` keys set on the command line to their ``--set`` text (named in messages)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"(top level): must be a table of sections (found {type(raw).__name__})"])
    problems: List[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: " + unknown_name(key, list(SECTIONS), "section"))
    sections: Dict[str, BaseModel] = {}
    values: Dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section == "model":
            continue
        if section not in raw and section not in REQUIRED_SECTIONS:
            sub = cls()
            sections[section] = sub
            values.update({f"{section}.{k}": v for k, v in sub.__dict__.items()})
            continue
        if section == "schema":
            schema, found = _validate_schema_section(raw.get("schema", {}))
            problems.extend(found)
            if schema is not None:
                sections[section] = schema
            continue
        table = raw.get(section, {})
        if section == "task" and isinstance(table, dict):
            table = {k: v for k, v in table.items() if f"task.{k}" not in FIELD_AT}  # the model's, below
        sub, found, good = _validate_section(section, cls, table)
        problems.extend(found)
        values.update(good)
        if sub is not None:
            sections[section] = sub
    model, found, good = _validate_model_settings(raw.get("model", {}), raw.get("task", {}))
    problems.extend(found)
    values.update(good)
    if model is not None:
        sections["model"] = model
    problems.extend(f"{loc}: {msg}" for loc, msg in run_problems(values))
    if problems:
        raise ConfigError(source, [_mention_override(p, overrides) for p in problems])
    return RunConfig.from_checked(sections)


def _mention_override(problem: str, overrides: Mapping[str, str]) -> str:
    """Append '(from --set ...)' to a problem whose location was set on the command line."""
    where = problem.split(":", 1)[0]
    key = ".".join(re.split(r"[\[ ]", where, maxsplit=1)[0].split(".")[:2])
    named = [text for k, text in overrides.items() if k == key or k.startswith(key + ".")]
    return f"{problem} (from --set {', '.join(named)})" if named else problem


# -- paths ----------------------------------------------------------------------------------

_PATH_FIELDS = (("data", "train"), ("data", "valid"), ("data", "items"), ("data", "spec"), ("schema", "path"))


def _absolute(path: str, base: str) -> str:
    if "://" in path or not path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _resolve(raw: dict, section: str, key: str, base: str) -> None:
    table = raw.get(section)
    if not isinstance(table, dict) or key not in table:
        return
    value = table[key]
    if isinstance(value, str):
        table[key] = _absolute(value, base)
    elif isinstance(value, list):
        table[key] = [_absolute(v, base) if isinstance(v, str) else v for v in value]


def _resolve_paths(raw: dict, base: str, only: Optional[set] = None) -> None:
    for section, key in _PATH_FIELDS:
        if only is None or f"{section}.{key}" in only:
            _resolve(raw, section, key, base)


def _absolute_storage(cfg: RunConfig) -> RunConfig:
    storage = cfg.tracking.storage_path
    absolute = _absolute(storage, os.getcwd())
    if absolute == storage:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"storage_path": absolute})})


# -- overrides ------------------------------------------------------------------------------


def _override_value(section: str, key: str, text: str) -> Any:
    """A ``--set`` value: a TOML value when it parses as one (numbers, booleans, arrays, quoted
    strings), else the text itself. Text meant for a string field stays text (``run_name=2024``)."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, (datetime, date, time)):
        return text
    field = section_fields(section).get(key) if section in SECTIONS else None
    if field is not None and field.annotation in (str, Optional[str]) and not isinstance(value, str):
        return text
    return value


def _apply_overrides(raw: dict, overrides: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """Set each ``section.field=value`` in ``raw``; return {key: override text} and malformed ones."""
    applied: Dict[str, str] = {}
    bad: List[str] = []
    for item in overrides:
        key, eq, text = item.partition("=")
        key, text = key.strip(), text.strip()
        parts = key.split(".")
        if not eq or len(parts) != 2 or not all(parts):
            bad.append(f"{key or item!s}: cannot apply --set {item!r} (expected section.field=value)")
            continue
        section, field = parts
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            bad.append(f"{key}: cannot apply --set {item!r} ([{section}] is not a table)")
            continue
        table[field] = _override_value(section, field, text)
        applied[key] = item
    return applied, bad


# -- entry points ---------------------------------------------------------------------------


def parse_run_config(raw: dict, source: str = "<config>", base_dir: Optional[str | os.PathLike] = None) -> RunConfig:
    """Validate a config given as a dict (e.g. a saved ``cfg.as_dict()``).

    Relative data / schema / spec paths are resolved against ``base_dir`` when given (left as
    they are otherwise); ``tracking.storage_path`` is made absolute against the working directory.

    Raises:
        ConfigError: listing every problem, one line each, starting with its location.
    """
    raw = _copy(raw)
    if base_dir is not None and isinstance(raw, dict):
        _resolve_paths(raw, os.path.abspath(base_dir))
    return _absolute_storage(_validate(raw, source))


def load_run_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config TOML, apply ``--set section.field=value`` overrides, validate.

    Relative paths in the file are relative to the file's directory; relative paths given as
    overrides are relative to the working directory (see the module docstring).

    Raises:
        ConfigError: for a missing file, a TOML syntax error (with its line), or any problem in
            the config or the overrides (all listed at once).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(source, [f"cannot read config file: {err.strerror or err}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [f"TOML syntax error: {err}"]) from None
    _resolve_paths(raw, os.path.dirname(os.path.abspath(path)))
    applied, bad = _apply_overrides(raw, overrides)
    _resolve_paths(raw, os.getcwd(), only=set(applied))
    try:
        cfg = _validate(raw, source, applied)
    except ConfigError as err:
        raise ConfigError(source, bad + err.problems) from None
    if bad:
        raise ConfigError(source, bad)
    return _absolute_storage(cfg)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value
