"""Starting or joining Ray for the pipelines (training and batch jobs)."""

from __future__ import annotations

import logging
import os
from typing import Optional


def use_ray_train_v2() -> None:
    """Ray Train V2 whatever the installed Ray's default: checkpoint retention, resume and the
    reports of the training loop are written against it. Call before ``ray.train`` is imported."""
    os.environ["RAY_TRAIN_V2_ENABLED"] = "1"


def start_ray(address: Optional[str], num_cpus: int) -> None:
    """Join ``address`` / ``RAY_ADDRESS``, or start a private local Ray with ``num_cpus`` CPUs.

    A Ray already initialized in this process is kept as it is.

    Args:
        address: a Ray cluster address (``ray://...``, ``host:port``, ``auto``), or None.
        num_cpus: CPUs of a local Ray (ignored when joining a cluster).
    """
    use_ray_train_v2()
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    # Ray Train V2 also routes print() through logging, which shows every worker line twice.
    quiet_prints = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env={"env_vars": quiet_prints})
    else:
        os.environ.update({k: os.environ.get(k, v) for k, v in quiet_prints.items()})
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray: no token set-up
        ray.init(num_cpus=max(2, num_cpus), include_dashboard=False, log_to_driver=True)


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
