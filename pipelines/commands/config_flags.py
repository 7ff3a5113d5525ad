"""Command-line flags built from a job's config model, so that each option is declared once: in
the model (``deepsets.pipelines.options``), as ``--set`` reads the run config's fields.

    add_config_flags(parser, EmbedConfig)                        # --model, --input, --batch-size, ...
    cfg = parse_embed_config(**config_values(args, EmbedConfig))  # every field, as parsed

A field ``batch_size: int = Field(1024, ge=1, description="rows per forward pass")`` becomes
``--batch-size`` taking an ``int``, default 1024, help "rows per forward pass (default 1024)";
the model checks the value (``ge=1``) when the job's config is built, as it does for the Python
API. Switches, choices and lists follow from the field's type:

| field type                      | on the command line                                         |
|---------------------------------|-------------------------------------------------------------|
| ``bool`` (default false / true) | a switch ``--name`` / ``--no-name`` (or ``Flag(name)``),    |
|                                 | whose help is "do not " + the description                   |
| ``Literal["a", "b"]``           | one of the choices                                          |
| ``List[str]``                   | one or more values; ``Flag(repeat=True)``: one per use;     |
|                                 | ``Flag(separator=",")``: one value, items joined by it       |
| ``int``, ``float``, ``str``     | one value of that type (``Optional[...]``: may be left out) |
| ``Union[str, ...]``             | one text value, which the model reads (``--budget 20m``);   |
|                                 | the other types are for Python callers                      |

A field that Python may leave out but the command line needs is marked ``Flag(required=True)``.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from deepsets.pipelines.options import Flag


def add_config_flags(parser: argparse.ArgumentParser, cls: type[BaseModel]) -> None:
    """One flag per field of ``cls``, in the model's order (fields with a ``Flag(group=...)``
    under that heading).

    Raises:
        TypeError: for a field with no description, or of a type no flag is built for (a
            mistake in the model, found when the parser is built).
    """
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for name, info in cls.model_fields.items():
        flag = flag_of(info)
        where = parser if flag.group is None else groups.get(flag.group)
        if where is None:
            where = groups[flag.group] = parser.add_argument_group(flag.group)
        written = flag_name(name, info, flag)
        options = _argument(cls, name, info, flag)
        if flag.name and "action" not in options and "choices" not in options and "metavar" not in options:
            options["metavar"] = written.lstrip("-").upper().replace("-", "_")  # INPUT for --input, not INPUTS
        where.add_argument(written, dest=name, **options)


def config_values(args: argparse.Namespace, cls: type[BaseModel]) -> Dict[str, Any]:
    """``{field: value}`` of every field of ``cls`` as the parser left it in ``args``."""
    return {name: getattr(args, name) for name in cls.model_fields}


def flag_of(info: FieldInfo) -> Flag:
    """The field's :class:`Flag` (``Annotated[..., Flag(...)]``), or the default one."""
    return next((item for item in info.metadata if isinstance(item, Flag)), Flag())


def flag_name(name: str, info: FieldInfo, flag: Flag) -> str:
    """``--batch-size`` for ``batch_size``; ``--no-<name>`` for a switch that defaults to true."""
    if flag.name:
        return flag.name
    dashed = name.replace("_", "-")
    return f"--no-{dashed}" if _base(info.annotation)[0] is bool and info.default is True else f"--{dashed}"


def _argument(cls: type[BaseModel], name: str, info: FieldInfo, flag: Flag) -> Dict[str, Any]:
    """``add_argument`` keywords of one field: its value, default and help."""
    if not info.description:
        raise TypeError(f"{cls.__name__}.{name}: a job option needs a description (its --help text)")
    base, args = _base(info.annotation)
    required = info.is_required() or flag.required
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    options: Dict[str, Any] = {"help": _help(info.description, default).replace("%", "%%")}
    if flag.metavar:
        options["metavar"] = flag.metavar
    if base is bool:  # a switch; one that turns a default-true option off says so
        negated = f"do not {info.description}".replace("%", "%%")
        return {
            **options,
            "action": "store_false" if default else "store_true",
            **({"help": negated} if default else {}),
        }
    if base is list:
        item = _value_type(cls, name, args[0] if args else str)
        if flag.separator is not None:
            joined = None if default is None else flag.separator.join(str(v) for v in default)
            return {**options, "type": _splitter(item, flag.separator), "default": joined, "required": required}
        if flag.repeat:
            if default:
                raise TypeError(
                    f"{cls.__name__}.{name}: a repeated flag's default must be None or empty (argparse appends to it)"
                )
            return {**options, "action": "append", "type": item, "default": default, "required": required}
        return {**options, "nargs": "+", "type": item, "default": default, "required": required}
    if base is typing.Literal:
        return {
            **options,
            "choices": args,
            "type": _value_type(cls, name, type(args[0])),
            "default": default,
            "required": required,
        }
    return {**options, "type": _value_type(cls, name, base), "default": default, "required": required}


def _base(annotation: Any) -> Tuple[Any, Tuple[Any, ...]]:
    """``(origin or type, its arguments)`` of a field's type, without ``Annotated`` and
    ``Optional``: ``(list, (str,))``, ``(Literal, ("a", "b"))``, ``(int, ())``; ``(str, ())`` for
    a union with ``str`` (text on the command line, which the model reads)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return _base(kept[0])
        if str in kept:
            return str, ()
    origin = typing.get_origin(annotation)
    if origin is not None:
        return (list if origin in (list, List) else origin), typing.get_args(annotation)
    return annotation, ()


def _value_type(cls: type[BaseModel], name: str, kind: Any) -> Optional[Callable[[str], Any]]:
    """The ``type=`` of a value: int or float; None for text (argparse keeps it as given)."""
    if kind in (int, float):
        return kind
    if kind is str:
        return None
    raise TypeError(f"{cls.__name__}.{name}: no command-line flag is built for a value of type {kind!r}")


def _splitter(item: Optional[Callable[[str], Any]], separator: str) -> Callable[[str], List[Any]]:
    """``"a, b,"`` -> ``[item("a"), item("b")]`` (blank items left out)."""
    convert = item or str

    def split(text: str) -> List[Any]:
        return [convert(part.strip()) for part in text.split(separator) if part.strip()]

    split.__name__ = f"{separator!r}-separated list"  # named so in argparse's messages
    return split


def _help(description: str, default: Any) -> str:
    """The description, plus the default where it does not mention one and there is one to say."""
    if default is None or isinstance(default, bool) or default in ("", []) or "default" in description:
        return description
    shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
    return f"{description} (default {shown})"
