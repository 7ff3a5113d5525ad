"""Free the CPUs of trials ASHA stopped.

A trial's Ray Train run reserves its workers' CPUs in a placement group created by its Train
controller actor. When Tune stops the trial, the controller dies with it but the placement
group stays: Ray removes a group only once its creator actor *and* the creator's job are gone,
and the job is this driver. Ray Train's own cleaner actor notices a dead controller through the
State API, which lives in the dashboard process a private local Ray does not start. Left alone,
the stopped trials' groups keep their CPUs until the next trial waits forever for them.

:class:`OrphanSweeper` removes, at most every few seconds, each placement group of this driver's
job whose creator actor is dead. It reads the placement-group table from Ray's control store (no
dashboard needed). Nobody can use such a group any more: its creator was the only holder of its
handle. Groups of other jobs (other drivers on a shared cluster) are never touched: their own
drivers, or Ray once those end, remove them.
"""

from __future__ import annotations

import logging
import time
from typing import List

logger = logging.getLogger(__name__)
_failures_told: set = set()  # kinds of failure already warned of (a sweep runs every few seconds)


def placement_group_table() -> list:
    """Every placement group Ray's control store knows of, as ``PlacementGroupTableData``."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    return [
        gcs_pb2.PlacementGroupTableData.FromString(raw)
        for raw in state._connect_and_get_accessor().get_placement_group_table()
    ]


def current_job_id() -> str:
    """Hex id of this driver's Ray job."""
    import ray

    return ray.get_runtime_context().get_job_id()


def orphaned_placement_groups() -> List[str]:
    """Hex ids of this job's live placement groups whose creator actor is dead."""
    import ray
    from ray.core.generated import gcs_pb2

    live = (
        gcs_pb2.PlacementGroupTableData.PENDING,
        gcs_pb2.PlacementGroupTableData.PREPARED,
        gcs_pb2.PlacementGroupTableData.CREATED,
        gcs_pb2.PlacementGroupTableData.RESCHEDULING,
    )
    table = placement_group_table()
    job = current_job_id()
    orphans = []
    for group in table:
        # a group the driver created names no actor: Ray's nil id, every byte 0xff
        created_by_actor = bool(group.creator_actor_id) and set(group.creator_actor_id) != {0xFF}
        ours = group.creator_job_id.hex() == job  # another driver's job is not ours to clean
        if ours and group.state in live and created_by_actor and group.creator_actor_dead and not group.is_detached:
            orphans.append(ray.PlacementGroupID(group.placement_group_id).hex())
    return orphans


def remove_orphaned_placement_groups() -> int:
    """Remove every placement group :func:`orphaned_placement_groups` finds; returns how many.

    Never raises: a table that cannot be read (a Ray whose internals differ from what this
    reads) or a group that cannot be removed is logged as a warning and the search goes on.
    """
    import importlib

    import ray

    groups = importlib.import_module(
        "ray.util.placement_group"
    )  # the module: ray.util.placement_group is also a function

    try:
        orphans = orphaned_placement_groups()
    except Exception as err:  # noqa: BLE001 - private Ray API: never fail a search over it
        level = logging.DEBUG if type(err) in _failures_told else logging.WARNING
        _failures_told.add(type(err))
        logger.log(level, "could not look for the placement groups of stopped trials: %s: %s", type(err).__name__, err)
        return 0
    removed = 0
    for group_id in orphans:
        try:
            groups.remove_placement_group(groups.PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
            removed += 1
        except Exception as err:  # noqa: BLE001 - the next sweep tries again
            logger.warning(
                "could not remove placement group %s of a stopped trial: %s: %s", group_id, type(err).__name__, err
            )
    return removed


def orphan_sweeper(every_s: float = 2.0):
    """A Tune callback that calls :func:`remove_orphaned_placement_groups` at most every ``every_s``.

    Args:
        every_s: seconds between two sweeps (Tune calls ``on_step_begin`` many times a second).
    """
    from ray import tune

    class OrphanSweeper(tune.Callback):
        def __init__(self):
            self.last = 0.0
            self.removed = 0

        def on_step_begin(self, iteration, trials, **info):
            if time.monotonic() - self.last >= every_s:
                self.last = time.monotonic()
                self.removed += remove_orphaned_placement_groups()

    return OrphanSweeper()
