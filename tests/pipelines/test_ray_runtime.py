"""Ray's console noise is dropped at its source, and only the noise."""

import logging
import re
import threading

from deepsets.pipelines.ray_runtime import (
    CHATTY_RAY_LOGGERS,
    RAY_TRAIN_CLEANER_THREAD,
    quiet_ray_logs,
    quiet_worker_loggers,
)

SEEN_IN_MAKE_DEMO = [
    "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. Continuing to monitor.",
    "[2026-11-30 04:17:45,128 E 22862 22952] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: 'a0dc' "
    "has constructor arguments in the object store and max_restarts > 0. If the arguments in the object store go out of scope",
    "Found multiple active Ray instances: {'192.0.2.2:38813', '192.0.2.2:6379'}. Connecting to latest cluster at 192.0.2.2:6379.",
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'epoch': 0, 'step': 4}, validation=False) from rank 1",
    "Checkpoint successfully created at: Checkpoint(filesystem=local, path=/tmp/demo/ray_results/demo/checkpoint_2026)",
    "Setting up process group for: env:// [rank=0, world_size=2]",
    "Moving model to device: cpu",
]
OURS = [
    "epoch 1/3: train_loss 0.7262, valid_auc 0.4889",
    "error: the training loss is inf at epoch 1/1",
    "(raylet) A worker died or was killed while executing a task by an unexpected system error.",
]


def test_the_skip_pattern_drops_the_known_lines_and_keeps_everything_else(monkeypatch):
    monkeypatch.delenv("RAY_DEDUP_LOGS_SKIP_REGEX", raising=False)
    quiet_ray_logs()
    import os

    pattern = re.compile(os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"])
    assert all(pattern.search(line) for line in SEEN_IN_MAKE_DEMO)
    assert not any(pattern.search(line) for line in OURS)


def test_ray_filters_the_lines_in_the_driver(monkeypatch):
    from ray._private import ray_logging

    quiet_ray_logs()
    batch = {"ip": "1", "pid": 2, "task_name": "t", "is_err": True, "lines": SEEN_IN_MAKE_DEMO + OURS}
    printed = [line for out in ray_logging.stderr_deduplicator.deduplicate(batch) for line in out["lines"]]
    assert printed == OURS


def test_worker_set_up_quiets_ray_loggers_and_only_the_cleaner_threads_end():
    previous_hook, reached = threading.excepthook, []
    threading.excepthook = lambda args: reached.append(args.thread.name)  # what a worker would print
    try:
        quiet_worker_loggers()
        assert all(logging.getLogger(name).level == logging.WARNING for name in CHATTY_RAY_LOGGERS)

        def fail():
            raise ConnectionError("Found multiple active Ray instances")

        for name in (RAY_TRAIN_CLEANER_THREAD, "ours"):
            thread = threading.Thread(target=fail, name=name)
            thread.start()
            thread.join()
        assert reached == ["ours"]
    finally:
        threading.excepthook = previous_hook


def test_in_a_private_ray_the_autoscaler_request_warning_is_dropped_and_nothing_else(monkeypatch):
    from deepsets.pipelines.ray_runtime import AUTOSCALER_CLIENT_LOGGER, PRIVATE_RAY_ENV

    monkeypatch.setenv(PRIVATE_RAY_ENV, "1")
    previous_hook = threading.excepthook
    logger = logging.getLogger(AUTOSCALER_CLIENT_LOGGER)
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        quiet_worker_loggers()
        logger.warning(
            "Failed to send resource request for train-1. If this only happens transiently ...", exc_info=False
        )
        logger.warning("something else")
        assert seen == ["something else"]
    finally:
        logger.removeHandler(handler)
        logger.filters.clear()
        threading.excepthook = previous_hook
