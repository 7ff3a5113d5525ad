"""Options shared by several ``deepsets`` subcommands."""

from __future__ import annotations

JSON_HELP = "print a JSON summary as the last line"


def _add_model_and_input(p, input_help: str) -> None:
    """The two arguments every job that runs a trained model takes."""
    p.add_argument("--model", required=True, help="MLflow model URI (runs:/..., models:/...) or a checkpoint directory")
    p.add_argument("--input", required=True, nargs="+", help=input_help)
