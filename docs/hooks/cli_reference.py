"""The command line reference page, rendered from the ``deepsets`` argparse parsers themselves:
every command, flag, default and help text as the program declares them."""

from __future__ import annotations

import argparse

from deepsets.pipelines.cli import build_parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{command name: its parser}`` in the order the program declares them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{command name: its one-line help}``."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


class _FixedWidth(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100)


def _flags(action: argparse.Action) -> str:
    return ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"


def _value(action: argparse.Action) -> str:
    """What the flag takes: nothing (a switch), one of its choices, or its metavar / type."""
    if action.nargs == 0:
        return "switch"
    if action.choices:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    name = action.metavar or (action.type.__name__ if isinstance(action.type, type) else "TEXT")
    repeat = {"+": " (one or more)", "*": " (any number)"}.get(action.nargs, "")
    if isinstance(action, argparse._AppendAction):
        repeat = " (repeatable)"
    return f"`{name}`{repeat}"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0:
        return "off" if not action.default else "on"
    if action.default in (None, [], ""):
        return "none"
    return f"`{action.default}`"


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()).replace("%%", "%")


def action_table(actions: list[argparse.Action]) -> str:
    lines = ["| flag | value | default | help |", "|---|---|---|---|"]
    for action in actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        lines.append(f"| {_flags(action)} | {_value(action)} | {_default(action)} | {_escape(action.help or '')} |")
    return "\n".join(lines)


def command_section(name: str, help_text: str, parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = _FixedWidth  # the usage lines the same in every terminal
    parts = [f"## `deepsets {name}`", "", _escape(help_text), "", "```text", parser.format_usage().strip(), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        if group.title not in ("options", "optional arguments", "positional arguments"):
            parts += [f"**{group.title}**", ""]
        parts += [action_table(actions), ""]
    return "\n".join(parts)


def render() -> str:
    """The whole command line reference page, as Markdown."""
    parser = build_parser()
    helps = command_help(parser)
    parts = [
        "# Command line reference",
        "",
        (
            "Generated from the program's own argument parsers at build time, so every flag, default and help "
            "text below is the one `deepsets` accepts. Every command takes `--json` (one JSON object as the last "
            "line); bad input ends with one `error:` line and exit status 2."
        ),
        "",
        _escape(parser.description or ""),
        "",
    ]
    parts += [
        f"- [`deepsets {name}`](#deepsets-{name}): {_escape(helps.get(name, ''))}" for name in subcommands(parser)
    ]
    parts.append("")
    parts += [command_section(name, helps.get(name, ""), sub) for name, sub in subcommands(parser).items()]
    return "\n".join(parts)
