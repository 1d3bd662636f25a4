"""An engine stage over a dataset, and its results committed at the driver as they stream back.

Distill (`actors.teacher.TeacherStage`) and evaluation (`actors.eval_stage.EvalStage`) run the same way: a Ray Data
actor pool of one stage class, each actor owning one engine, fed one batch per block; the driver reads the results
batch by batch, passes each finished row through the circuit breaker (`pipeline.breaker`) and commits what it
releases. When the breaker trips, the stream stops and the rows that tripped it stay uncommitted, so the same command
after the fix tries them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pyarrow as pa
import ray
# Ray Data has no public way to bound a queue by count; its backpressure policies are the place (Ray is pinned).
from ray.data._internal.execution.backpressure_policy import (
    ENABLED_BACKPRESSURE_POLICIES,
    ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
    BackpressurePolicy,
)
from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator
from tqdm import tqdm

from pipeline.breaker import CircuitBreaker
from pipeline.config import EngineConfig
from pipeline.resources import pool_range, stage_resources

T = TypeVar("T")


def map_engine_stage(
    dataset: ray.data.Dataset, stage: type, engine: EngineConfig, constructor_kwargs: dict[str, Any]
) -> ray.data.Dataset:
    """`dataset` through a pool of `engine.replicas` actors of `stage` (growing to `engine.max_replicas` while batches
    wait, when set); the dataset must hold one batch per block: an actor works on the batches of different tasks at
    once, never on those of one task."""
    num_cpus, num_gpus = stage_resources(engine)
    results = dataset.map_batches(
        stage,
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=engine.batch_size,
        compute=actor_pool(engine, engine.batches_in_flight),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    # Enough waiting for every actor of the largest pool to take its next batches at once.
    queued_blocks = 2 * pool_range(engine)[1] * engine.batches_in_flight
    results.context.set_config(QUEUED_BLOCKS_CONFIG_KEY, queued_blocks)
    results.context.set_config(
        ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [*ENABLED_BACKPRESSURE_POLICIES, EngineQueueCap]
    )
    return results


QUEUED_BLOCKS_CONFIG_KEY = "distillery.queued_blocks"


class EngineQueueCap(BackpressurePolicy):
    """Holds back whatever feeds an actor pool while `distillery.queued_blocks` blocks already wait for it.

    Ray Data bounds the blocks queued between two operators by their bytes in the object store. Queries are small (a
    million fit in a few MB), so without a count the read runs ahead of the engines by the whole corpus, and the
    driver keeps ~15 KB of bookkeeping per waiting block (its references and metadata): ~120 MB for 1M queries and 2
    teachers, measured in docs/scale.md."""

    def can_add_input(self, op) -> bool:
        return not self._full(op)

    def max_task_output_bytes_to_read(self, op) -> int | None:
        return 0 if self._full(op) else None

    def _full(self, op) -> bool:
        pools = [d for d in op.output_dependencies if isinstance(d, ActorPoolMapOperator)]
        if not pools:
            return False
        waiting = self._topology[op].total_enqueued_output_blocks()
        waiting += sum(self._topology[pool].total_enqueued_input_blocks() for pool in pools)
        return waiting >= self._data_context.get_config(QUEUED_BLOCKS_CONFIG_KEY)


def actor_pool(engine: EngineConfig, calls_per_actor: int | None = None) -> ray.data.ActorPoolStrategy:
    """Ray Data's pool for an engine's replicas: fixed, or growing to `max_replicas` while batches wait. Ray Data
    restarts a dead actor and retries its batches by itself (max_restarts and max_task_retries -1)."""
    fewest, most = pool_range(engine)
    return ray.data.ActorPoolStrategy(
        min_size=fewest, max_size=most, max_tasks_in_flight_per_actor=calls_per_actor,
        max_concurrent_calls_per_actor=calls_per_actor,
    )


@dataclass
class Streamed(Generic[T]):
    tripped_on: T | None = None  # the row that tripped the breaker; None when the stream ran to its end
    generation_s: float = 0.0  # from the first engine ready to the last result


def commit_stream(
    results: ray.data.Dataset,
    rows: Callable[[pa.Table], Iterable[tuple[T, str | None]]],
    commit: Callable[[T], None],
    breaker: CircuitBreaker[T],
    bar: tqdm,
    postfix: Callable[[float], dict[str, Any]],
) -> Streamed[T]:
    """Reads `results` (each batch with an `engine_ready_at` column), splits each batch into (row, request-failure
    reason or None) with `rows`, and commits every row the breaker releases; `postfix(generation_s)` feeds the bar.
    Held rows are committed at the end unless the breaker tripped."""
    streamed: Streamed[T] = Streamed()
    first_ready_at = None
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        last_result_at = time.time()
        ready_at = min(batch.column("engine_ready_at").to_pylist())
        first_ready_at = ready_at if first_ready_at is None else min(first_ready_at, ready_at)
        streamed.generation_s = max(last_result_at - first_ready_at, 1e-9)
        for row, failure in rows(batch):
            for released in breaker.add(row, failure):
                commit(released)
            if breaker.tripped:
                streamed.tripped_on = row
                break
        bar.update(batch.num_rows)
        bar.set_postfix(**postfix(streamed.generation_s))
        if breaker.tripped:
            break
    bar.close()
    if not breaker.tripped:
        for released in breaker.drain():
            commit(released)
    return streamed
