"""The checker pool sizes itself by the calls in flight its copies report: it grows to `max_replicas` while calls
queue, and after each `idle_s` in which fewer members could have carried them it retires one, down to `replicas`.
Real local Ray and real checker actors; the load is what the copies inside engine actors would report."""

from __future__ import annotations

import time

import pytest
import ray

from actors.verifier_pool import VerifierPool
from pipeline.config import VerifierConfig


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def sizes_while(supervisor, in_flight: int, until, timeout_s: float) -> list[int]:
    """The pool's size, read every half second while one copy keeps reporting `in_flight` calls, until `until` holds
    for it."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while not seen or not until(seen[-1]):
        assert time.monotonic() < deadline, f"sizes seen: {seen}"
        seen.append(len(ray.get(supervisor.report.remote("engine-copy", in_flight))))
        time.sleep(0.5)
    return seen


def test_the_pool_grows_under_load_and_shrinks_one_member_per_idle_period(cluster):
    config = VerifierConfig(replicas=1, max_replicas=3, idle_s=3.0, num_cpus=0.5, code=False)
    pool = VerifierPool.start(config, None)
    supervisor = pool._checkers.supervisor
    try:
        assert len(ray.get(supervisor.members.remote())) == 1

        grown = sizes_while(supervisor, 10, lambda size: size == 3, timeout_s=60)
        assert grown[0] == 1 and max(grown) == 3, "capped at max_replicas however many calls wait"

        started = time.monotonic()
        shrunk = sizes_while(supervisor, 0, lambda size: size == 1, timeout_s=60)
        assert shrunk == sorted(shrunk, reverse=True) and 2 in shrunk, shrunk
        assert time.monotonic() - started >= 2 * config.idle_s, "one member per idle period, not all at once"
        time.sleep(2 * config.idle_s)
        assert len(ray.get(supervisor.report.remote("engine-copy", 0))) == 1, "never below replicas"
    finally:
        pool.shutdown()
