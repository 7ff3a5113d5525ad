"""Options shared by several ``deepsets`` subcommands."""

from __future__ import annotations

JSON_HELP = "print a JSON summary as the last line"
