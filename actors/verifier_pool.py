"""CPU verifier actors, sized independently of the generators.

Each actor owns a `ResponseVerifier`, whose Math-Verify calls run in a killable child process. Actors restart by
themselves after a crash and Ray retries the calls that were in flight.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import ray

from actors.metrics import VerifierMetrics
from pipeline.config import VerifierConfig
from pipeline.response_format import ResponseFormat
from pipeline.schema import Query
from pipeline.verifiers.dispatch import ResponseVerifier


@ray.remote(max_restarts=-1, max_task_retries=-1)
class VerifierActor:
    def __init__(self, config: dict[str, Any]):
        self._verifier = ResponseVerifier(VerifierConfig.model_validate(config))
        self._metrics = VerifierMetrics()

    def verify(self, query_row: dict[str, Any], response: str, response_format: ResponseFormat) -> dict[str, Any]:
        query = Query.from_row(query_row)
        started = time.perf_counter()
        verdict = self._verifier.verify(query, response, response_format)
        self._metrics.observe(query.category.value, time.perf_counter() - started)
        return verdict.to_dict()


class VerifierPool:
    """Handles to the verifier actors, used round-robin. Handles pickle, so the pool travels to other actors."""

    def __init__(self, handles: list[ray.actor.ActorHandle]):
        self.handles = handles
        self._next = itertools.cycle(range(len(handles)))

    @classmethod
    def start(cls, config: VerifierConfig) -> "VerifierPool":
        actor = VerifierActor.options(num_cpus=config.num_cpus)
        return cls([actor.remote(config.model_dump()) for _ in range(config.replicas)])

    def __reduce__(self):
        return VerifierPool, (self.handles,)

    def verify(self, query: Query, response: str, response_format: ResponseFormat) -> ray.ObjectRef:
        handle = self.handles[next(self._next)]
        return handle.verify.remote(query.to_row(), response, response_format)

    def shutdown(self) -> None:
        for handle in self.handles:
            ray.kill(handle)
