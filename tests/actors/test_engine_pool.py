"""An engine stage is fed as fast as its actors take batches, never by the whole corpus ahead of them."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from actors.engine_pool import map_engine_stage
from pipeline.config import VLLMEngineConfig


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def one_by_one(batch: dict[str, np.ndarray]):
    """Stands for a read: one task making many small blocks, as a file of short queries does."""
    for i in batch["id"]:
        yield {"id": [i], "made_at": [time.time()]}


class SlowStage:
    """Stands for a teacher: 50 ms a batch, and notes when it took each one."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        taken_at = time.time()
        time.sleep(0.05)
        return {**batch, "taken_at": np.full(len(batch["id"]), taken_at)}


def most_waiting(rows: list[dict]) -> int:
    """The most batches made and not yet taken, at any moment a batch was taken."""
    made_at = np.sort([r["made_at"] for r in rows])
    taken_at = np.sort([r["taken_at"] for r in rows])
    return max(int(np.searchsorted(made_at, t, "right")) - i for i, t in enumerate(taken_at))


def test_the_batches_waiting_for_an_engine_pool_are_bounded_by_count(cluster):
    # One-row batches are tiny: Ray Data's own bound, bytes of object store, would let all 300 run ahead.
    engine = VLLMEngineConfig(replicas=1, num_cpus=0.5, batch_size=1, batches_in_flight=2)
    batches = ray.data.range(300, override_num_blocks=1).map_batches(one_by_one, batch_size=None)
    batches.context.target_max_block_size = 1  # each row its own block

    rows = map_engine_stage(batches, SlowStage, engine, {}).take_all()

    assert sorted(r["id"] for r in rows) == list(range(300))
    # 2 × 1 replica × 2 in flight may wait, and the read runs a few blocks past that before it pauses (8 here;
    # 149 without the bound).
    assert most_waiting(rows) <= 4 + 16
