"""The distill stage: a Ray Data callable class that owns one teacher engine and runs the regenerate loop per row.

Several batches are in flight per actor (`batches_in_flight`), and each row of a batch runs its own retry loop
concurrently, so the engine's continuous batching always has work. Per-row failures become reject records; an
engine that dies takes the actor down, and Ray restarts it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from actors.engines import build_engine
from actors.metrics import DistillMetrics
from actors.verifier_pool import VerifierPool
from pipeline.config import TeacherConfig
from pipeline.engine import Engine
from pipeline.regenerate import Outcome, distill_query
from pipeline.schema import Query, Reject
from pipeline.verifiers.base import Verdict


class TeacherStage:
    def __init__(
        self, teacher: dict[str, Any], verifiers: VerifierPool, config_hash: str, engine_class: str | None = None
    ):
        self._teacher = TeacherConfig.model_validate(teacher)
        self._verifiers = verifiers
        self._config_hash = config_hash
        self._engine: Engine = build_engine(self._teacher, engine_class)
        # Wall-clock time the engine could take requests: throughput is measured from here, not from cluster start.
        self._ready_at = time.time()
        self._metrics = DistillMetrics(self._teacher.name)

    async def _verify(self, query: Query, response: str) -> Verdict:
        return await self._verifiers.verify(query, response, self._teacher.response_format)

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        queries = [Query.from_row(_plain(dict(zip(batch, values)))) for values in zip(*batch.values())]
        self._metrics.started(len(queries))
        outcomes = await asyncio.gather(*(self._distill(q) for q in queries))
        for outcome in outcomes:
            self._metrics.record(outcome)
        return {**encode_outcomes(outcomes), "engine_ready_at": [self._ready_at] * len(outcomes)}

    async def _distill(self, query: Query) -> Outcome:
        routing = self._verifiers.route(query)
        if routing.route is None:
            # Generating what nothing can verify would only burn engine time.
            reject = Reject(
                id=query.id, origin=query.source or "", stage="distill", teacher=self._teacher.name,
                reason=routing.reason, detail=routing.detail, config_hash=self._config_hash,
            )
            return Outcome(None, reject, [])
        return await distill_query(query, self._teacher, self._engine.generate, self._verify, self._config_hash)

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Arrow hands nested columns to Python as numpy arrays; the schema wants lists."""
    messages = row.get("messages")
    if isinstance(messages, np.ndarray):
        row = {**row, "messages": list(messages)}
    return row


def encode_outcomes(outcomes: list[Outcome]) -> dict[str, list]:
    """Outcomes as JSON columns: accepted samples and rejects differ in shape, and Ray Data wants one schema."""
    return {
        "sample": [o.sample.model_dump_json() if o.sample else None for o in outcomes],
        "reject": [o.reject.model_dump_json() if o.reject else None for o in outcomes],
        "attempts": [json.dumps([a.model_dump(mode="json") for a in o.attempts]) for o in outcomes],
    }
