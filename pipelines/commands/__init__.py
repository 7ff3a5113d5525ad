"""The ``deepsets`` subcommands: each module builds its commands' parsers and runs them (``pipelines/cli.py`` wires them up)."""
