"""Starting or joining Ray for the pipelines (training and batch jobs)."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Optional

HARMLESS_RAY_LINES = (
    # Ray Train V2's placement-group cleaner polls the State API, which lives in Ray's dashboard
    # process; a private local Ray runs without one, so every poll fails. Its job (removing the
    # placement group of a controller that died, as in a trial Tune stopped) is done for
    # `deepsets tune` by deepsets.pipelines.tuning.orphans; a training run's ends with the private Ray.
    "Failed to query Ray Train Controller actor state",
    # core_worker.cc about Ray Train's own PreemptionWatcher actor, logged as an error on every run
    "has constructor arguments in the object store and max_restarts > 0",
    # the cleaner's State API client when another Ray runs on the machine (same cause as above)
    "Found multiple active Ray instances",
    # Ray Train worker INFO lines that escape RunConfig(logging_config=...) in Ray 2.60: each
    # report's whole dict, once per rank and epoch, and set-up chatter
    "Reporting training result ",
    "Checkpoint successfully created at: ",
    "Setting up process group for: ",
    "Moving model to device: ",
    # the raylet's note when a loaded machine starts workers faster than it expected (tune trials
    # on 2 cores): about Ray's start-up pacing, nothing a job's user can act on
    "worker processes have been started on node",
)
"""Lines Ray's workers print on every run that say nothing about this run; the driver drops them."""

RAY_CORE_NOISE = (
    # written by the driver's own C++ core worker when a Ray Data actor pool starts (Ray Data
    # passes object refs to every pool actor's constructor; ray-project/ray#53727): harmless,
    # as the driver holds those objects to the end of the job
    "has constructor arguments in the object store and max_restarts > 0",
)
"""Lines the driver's C++ core writes straight to fd 2; the embed job drops them there
(deepsets.pipelines.stderr_filter), as no Python-side filter sees them."""

PRIVATE_RAY_ENV = "DEEPSETS_PRIVATE_RAY"
"""Set in the workers of a local Ray that a job started for itself (not a cluster it joined)."""

AUTOSCALER_CLIENT_LOGGER = "ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client"

RAY_TRAIN_CLEANER_THREAD = "PlacementGroupCleanerMonitor"
"""Ray Train V2's thread that polls the State API for a crashed controller."""

CHATTY_RAY_LOGGERS = ("ray.train", "ray.data", "ray.tune")
"""Loggers set to WARNING in every Ray worker process: their INFO lines narrate Ray's
internals (worker groups, process groups, device moves) that the jobs report themselves."""


def use_ray_train_v2() -> None:
    """Ray Train V2 whatever the installed Ray's default: checkpoint retention, resume and the
    reports of the training loop are written against it. Call before ``ray.train`` is imported."""
    os.environ["RAY_TRAIN_V2_ENABLED"] = "1"


def start_ray(address: Optional[str], num_cpus: int) -> bool:
    """Join ``address`` / ``RAY_ADDRESS``, or start a private local Ray with ``num_cpus`` CPUs.

    A Ray already initialized in this process is kept as it is. A job that starts Ray goes
    through :func:`deepsets.pipelines.ray_processes.private_ray`, which also ends it.

    Args:
        address: a Ray cluster address (``ray://...``, ``host:port``, ``auto``), or None.
        num_cpus: CPUs of a local Ray (ignored when joining a cluster).

    Returns:
        True when a private local Ray was started here (its processes are this job's to end).
    """
    use_ray_train_v2()
    quiet_ray_logs()
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    # Ray Train V2 also routes print() through logging, which shows every worker line twice.
    quiet_prints = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    runtime_env = {"env_vars": quiet_prints, "worker_process_setup_hook": quiet_worker_loggers}
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env, logging_level=logging.WARNING)
        return False
    else:
        quiet_prints[PRIVATE_RAY_ENV] = "1"
        os.environ.update({k: os.environ.get(k, v) for k, v in quiet_prints.items()})
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray: no token set-up
        # address="local": a new Ray of our own even when `ray start` left one running here
        ray.init(
            address="local",
            num_cpus=max(2, num_cpus),
            include_dashboard=False,
            log_to_driver=True,
            runtime_env=runtime_env,
            logging_level=logging.WARNING,
        )
        return True


def require_gpus(needed: float, what: str) -> None:
    """Fail at once when the Ray cluster has fewer GPUs than ``needed`` in all (Ray would
    otherwise wait for them without a word).

    Raises:
        JobError: naming the setting that asked for them and what the cluster has.
    """
    import ray

    from deepsets.pipelines.errors import JobError

    have = float(ray.cluster_resources().get("GPU", 0.0))
    if needed > have:
        raise JobError(
            f"{what} needs {needed:g} GPU(s), but the Ray cluster has {have:g}: join a cluster with GPU nodes "
            "(--ray-address), or train on CPUs (use_gpu = false / no --gpus-per-worker)"
        )


def quiet_ray_logs() -> None:
    """Drop :data:`HARMLESS_RAY_LINES` from the worker output Ray forwards to this process, and
    leave colour codes out of it when stderr is not a terminal (a redirected log).

    Ray reads these settings from the environment when it is imported; when it already is,
    its two log filters are updated in place. Settings already in the environment win.
    """
    pattern = "|".join(re.escape(line) for line in HARMLESS_RAY_LINES)
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", pattern)
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    ray_logging = sys.modules.get("ray._private.ray_logging")
    for name in ("stdout_deduplicator", "stderr_deduplicator"):
        dedup = getattr(ray_logging, name, None)
        if dedup is not None and getattr(dedup, "skip_re", None) is None:
            dedup.skip_re = re.compile(os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"])


class _NoAutoscalerRequests(logging.Filter):
    """Drops Ray Train's "Failed to send resource request" warning (and its traceback): it asks
    Ray's autoscaler for the workers' resources and gives up after 5 s when the machine is
    busy; a private local Ray has no autoscaler to ask."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to send resource request")


def quiet_worker_loggers() -> None:
    """Ray worker process set-up: :data:`CHATTY_RAY_LOGGERS` at WARNING, and the end of Ray
    Train's placement-group cleaner thread kept off the console.

    When another Ray runs on the machine, that thread's State API client cannot tell which
    cluster to ask and dies with a ``ConnectionError`` traceback on every run; the run goes on
    unharmed (the thread only removes a dead controller's placement group: a private Ray
    removes it when it stops, and ``deepsets tune`` as soon as the trial stops).
    """
    import threading

    for name in CHATTY_RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if os.environ.get(PRIVATE_RAY_ENV) == "1":
        logging.getLogger(AUTOSCALER_CLIENT_LOGGER).addFilter(_NoAutoscalerRequests())
    previous = threading.excepthook

    def excepthook(args) -> None:
        if args.thread is not None and args.thread.name == RAY_TRAIN_CLEANER_THREAD:
            return
        previous(args)

    threading.excepthook = excepthook


def quiet_ray_data() -> None:
    """Ray Data without its own progress bars and execution logs (the jobs print their own)."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "execution finished", "progress bars disabled"
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.verbose_stats_logs = False
