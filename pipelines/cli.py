"""The ``deepsets`` command line: ``synth``, ``init``, ``fit``, ``read``, ``train``, ``tune``, ``embed``, ``retrieve``, ``ablate``, ``demo``.

Bad input ends with one ``error:`` line on stderr and exit status 2, never a traceback.
With ``--json`` the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Callable, List, Optional

from deepsets.pipelines.commands.data import _add_fit, _add_init, _add_read, _add_synth
from deepsets.pipelines.commands.models import _add_ablate, _add_embed, _add_retrieve
from deepsets.pipelines.commands.training import _add_demo, _add_train, _add_tune
from deepsets.pipelines.error_log import report_internal_error
from deepsets.pipelines.errors import USER_ERRORS
from deepsets.pipelines.redaction import redact_secrets, redact_uris


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsets",
        description="Set fusion of heterogeneous, partly missing features: Parquet in, Ray for training, MLflow for tracking.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_synth,
        _add_init,
        _add_fit,
        _add_read,
        _add_train,
        _add_tune,
        _add_embed,
        _add_retrieve,
        _add_ablate,
        _add_demo,
    ):
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``deepsets`` console script; returns the exit status."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], dict] = args.run
    ray_was_running = _ray_running()  # a caller's own Ray (a notebook, a test session) is left running
    try:
        summary = run(args)
    except (*USER_ERRORS, ValueError, OSError) as err:
        # ValueError: an option the model cannot serve; OSError: an unwritable --out and the
        # like. One line even when the message has several.
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug or an unforeseen failure: one line here, the traceback in a file
        report_internal_error(args.command, err, one_line(err))
        return 1
    if getattr(args, "json", False):
        if not ray_was_running:
            _stop_ray()  # Ray forwards worker output asynchronously: stop it, so the JSON line is last
        print(json.dumps(redact_secrets(json_safe(summary)), default=str, allow_nan=False))  # no URI's password
    return 0


def one_line(err: BaseException) -> str:
    """The error's message on one line (several lines joined by '; '), every URI's password
    redacted (MLflow's messages name the tracking URI as given)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return redact_uris("; ".join(lines)) or type(err).__name__


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _stop_ray() -> None:
    if _ray_running():
        sys.modules["ray"].shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
