"""The training commands: ``train``, ``tune`` and ``demo``.

The flags of ``tune`` are the fields of :class:`TuneConfig` (``add_config_flags``), declared there
once with their defaults and help.
"""

from __future__ import annotations

import os

from deepsets.pipelines.commands.config_flags import add_config_flags, config_values
from deepsets.pipelines.commands.options import JSON_HELP
from deepsets.pipelines.report import format_train_summary
from deepsets.pipelines.tuning.config import TuneConfig, parse_tune_config


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on Ray Train, tracked in MLflow")
    p.add_argument("--config", required=True, help="run config TOML (see docs/training.md)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set training.lr=0.01 (repeatable)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run named tracking.run_name from its last checkpoint"
    )
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_train)


def _run_train(args) -> dict:
    from deepsets.pipelines.config import load_run_config
    from deepsets.pipelines.training.run import run_training

    cfg = with_env_tracking_uri(load_run_config(args.config, args.overrides))
    summary = run_training(cfg, resume=args.resume, ray_address=args.ray_address, progress=not args.json)
    if not args.json:
        print(format_train_summary(summary))
    return summary


def with_env_tracking_uri(cfg):
    """An empty ``tracking.mlflow_uri`` filled from ``MLFLOW_TRACKING_URI`` as the user's shell set
    it (a tracking server a cluster shares). Only here, at the start of a command: in a longer
    process MLflow itself sets that variable on every ``set_tracking_uri``."""
    found = os.environ.get("MLFLOW_TRACKING_URI", "")
    if cfg.tracking.mlflow_uri or not found:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow_uri": found})})


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune", help="search a run config's settings on Ray Tune (ASHA stops poor trials early); writes best.toml"
    )
    add_config_flags(p, TuneConfig)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_tune)


def _run_tune(args) -> dict:
    from deepsets.pipelines.tuning.config import run_tune_config

    return run_tune_config(parse_tune_config(**config_values(args, TuneConfig)), progress=not args.json)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job on embedded defaults: synth -> fit -> read back -> train on 2 Ray workers, tracked in ./mlflow.db",
    )
    p.add_argument("--out", default="demo_output", help="working directory for the demo (default: demo_output)")
    p.add_argument(
        "--rows", type=int, default=60_000, help="rows of synthetic data, 5/6 train and 1/6 validation (default 60000)"
    )
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated rows")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> dict:
    from deepsets.pipelines.demo import run_demo

    return run_demo(out_dir=args.out, rows=args.rows, seed=args.seed, workers=args.workers, quiet=args.json)
