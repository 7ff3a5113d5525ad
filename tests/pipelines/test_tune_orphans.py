"""Placement groups left by a dead creator actor (a trial ASHA stopped) are found and removed."""

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
