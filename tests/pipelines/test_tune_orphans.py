"""Placement groups left by a dead creator actor (a trial ASHA stopped) are found and removed."""

import sys
import time

import ray
from ray.util.placement_group import placement_group, placement_group_table

from deepsets.pipelines.tuning.orphans import orphaned_placement_groups, remove_orphaned_placement_groups


@ray.remote(num_cpus=0)
class GroupMaker:
    """Stands for a Ray Train controller: it reserves a worker's CPU in a group of its own."""

    def make(self) -> str:
        group = placement_group([{"CPU": 1}])
        ray.get(group.ready())
        return group.id.hex()


def test_a_dead_creators_group_is_removed_and_its_cpu_freed_a_drivers_group_is_kept(ray_session):
    drivers = placement_group([{"CPU": 1}])
    ray.get(drivers.ready())
    maker = GroupMaker.remote()
    made = ray.get(maker.make.remote())
    try:
        assert made not in orphaned_placement_groups()  # its creator is alive
        ray.kill(maker)
        deadline = time.monotonic() + 30
        while made not in orphaned_placement_groups() and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = orphaned_placement_groups()  # a stopped trial of an earlier test may have left one too
        assert made in orphans
        assert remove_orphaned_placement_groups() == len(orphans)
        assert orphaned_placement_groups() == []
        assert placement_group_table(drivers)["state"] == "CREATED"
    finally:
        ray.util.remove_placement_group(drivers)


def _group(group_id: int, job: bytes, creator_dead: bool):
    """A placement-group table row as Ray's control store gives it: created by an actor of ``job``."""
    from ray.core.generated import gcs_pb2

    return gcs_pb2.PlacementGroupTableData(
        placement_group_id=bytes([group_id]) * 18,
        creator_job_id=job,
        creator_actor_id=bytes([group_id]) * 16,
        creator_actor_dead=creator_dead,
        state=gcs_pb2.PlacementGroupTableData.CREATED,
    )


def test_only_this_jobs_dead_creators_groups_are_removed(monkeypatch):
    from deepsets.pipelines.tuning import orphans

    ours, theirs = bytes.fromhex("01000000"), bytes.fromhex("02000000")
    table = [_group(1, ours, True), _group(2, theirs, True), _group(3, ours, False), _group(4, theirs, False)]
    removed = []
    monkeypatch.setattr(orphans, "placement_group_table", lambda: table)
    monkeypatch.setattr(orphans, "current_job_id", lambda: "01000000")
    monkeypatch.setattr(
        sys.modules["ray.util.placement_group"], "remove_placement_group", lambda group: removed.append(group.id.hex())
    )
    assert orphaned_placement_groups() == [(bytes([1]) * 18).hex()]  # another job's dead creator is not ours to clean
    assert remove_orphaned_placement_groups() == 1 and removed == [(bytes([1]) * 18).hex()]


def test_a_failing_listing_or_removal_is_a_warning_never_an_error(monkeypatch, caplog):
    from deepsets.pipelines.tuning import orphans

    def broken():
        raise ConnectionError("control store unreachable")

    monkeypatch.setattr(orphans, "placement_group_table", broken)
    monkeypatch.setattr(orphans, "_failures_told", set())
    with caplog.at_level("WARNING", logger=orphans.__name__):
        assert remove_orphaned_placement_groups() == 0
        assert remove_orphaned_placement_groups() == 0  # told once, not on every sweep
    assert [r.getMessage() for r in caplog.records if r.name == orphans.__name__] == [
        "could not look for the placement groups of stopped trials: ConnectionError: control store unreachable"
    ]

    def refused(group):
        raise RuntimeError("already removed")

    monkeypatch.setattr(orphans, "placement_group_table", lambda: [_group(1, bytes.fromhex("01000000"), True)])
    monkeypatch.setattr(orphans, "current_job_id", lambda: "01000000")
    monkeypatch.setattr(sys.modules["ray.util.placement_group"], "remove_placement_group", refused)
    caplog.clear()
    with caplog.at_level("WARNING", logger=orphans.__name__):
        assert remove_orphaned_placement_groups() == 0
    assert (
        [r for r in caplog.records if r.name == orphans.__name__][0]
        .getMessage()
        .endswith("of a stopped trial: RuntimeError: already removed")
    )
