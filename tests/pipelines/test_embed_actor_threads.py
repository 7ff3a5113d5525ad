"""The embed actor pool runs each call in the actor's own task thread: no extra non-daemon thread
that the actor's exit would have to join."""

import threading

import numpy as np

from deepsets.pipelines.embedding.job import embed_actor_pool


class ThreadProbe:
    """Returns, per batch, the non-daemon threads of the actor process other than its main thread."""

    def __call__(self, batch):
        others = sorted(t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread())
        return {"non_daemon": np.array([",".join(others)] * len(batch["id"]))}


def _non_daemon_threads(ray, compute) -> set:
    rows = ray.data.range(4, override_num_blocks=2).map_batches(ThreadProbe, batch_size=2, compute=compute).take_all()
    return {row["non_daemon"] for row in rows}


def test_the_embed_pool_adds_no_non_daemon_thread_to_its_actors(ray_session):
    ray = ray_session
    # Ray Data's default pool wraps the class in a one-thread executor: a non-daemon thread
    default = _non_daemon_threads(ray, ray.data.ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=1))
    assert any("ThreadPoolExecutor" in names for names in default)
    assert _non_daemon_threads(ray, embed_actor_pool(1)) == {""}
