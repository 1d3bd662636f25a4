"""The distill stage: a Ray Data callable class that owns one teacher engine and runs the regenerate loop per row.

Several batches are in flight per actor (`batches_in_flight`), and each row of a batch runs its own retry loop
concurrently, so the engine's continuous batching always has work.

A fault costs one row, never the run: a failed request, a verifier that raises, even a bug in this code on one row
end as that row's attempt or reject with a reason. Only an engine that is gone (`EngineBroken`) takes the actor down,
on purpose: the process exits, Ray starts a new actor with a new engine and retries the batches that were in flight.
`EngineStage` holds that engine and fault handling for every stage that owns an engine (evaluation too).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

from actors.engines import build_engine
from actors.metrics import DistillMetrics
from actors.verifier_pool import VerifierPool
from pipeline.config import EvalModel, TeacherConfig
from pipeline.engine import ENGINE_ERROR, Candidate, Engine, EngineBroken, RequestFailed
from pipeline.regenerate import VERIFIER_ERROR, Outcome, distill_query
from pipeline.schema import Query, Reject
from pipeline.verifiers.base import Verdict


class EngineStage:
    """What every stage owning one engine shares (the distill stage here, the evaluation stage in
    actors/eval_stage.py): the engine built from a served model, requests whose faults become `RequestFailed` except
    a dead engine, which ends the actor, and verification through the pool that never raises."""

    role = "model"  # names the served model in the message of an actor that restarts

    def __init__(
        self, served: TeacherConfig | EvalModel, verifiers: VerifierPool, engine_class: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ):
        self._served = served
        self._verifiers = verifiers
        self._engine: Engine = build_engine(served, engine_class, storage_options)
        # Wall-clock time the engine could take requests: throughput is measured from here, not from cluster start.
        self._ready_at = time.time()

    async def _generate(self, messages, sampling) -> list[Candidate]:
        try:
            return await self._engine.generate(messages, sampling)
        except RequestFailed:
            raise
        except EngineBroken as err:
            # Every row on this engine would now fail: better a new actor than a corpus of rejects.
            print(f"[distillery] {self.role} {self._served.name}: {err}; restarting the actor", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
        except Exception as err:  # noqa: BLE001 - an engine bug on one request fails that request only
            raise RequestFailed(ENGINE_ERROR, f"{type(err).__name__}: {err}"[:500], retryable=True) from err

    async def _verify(self, query: Query, response: str) -> Verdict:
        try:
            return await self._verifiers.verify(query, response, self._served.response_format)
        except Exception as err:  # noqa: BLE001 - a verifier that raises scores nothing, and the run goes on
            return Verdict(0.0, "error", {"error": f"{type(err).__name__}: {err}"[-500:]}, failure=VERIFIER_ERROR)

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


class TeacherStage(EngineStage):
    role = "teacher"

    def __init__(
        self, teacher: dict[str, Any], verifiers: VerifierPool, config_hash: str, engine_class: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ):
        super().__init__(TeacherConfig.model_validate(teacher), verifiers, engine_class, storage_options)
        self._config_hash = config_hash
        self._metrics = DistillMetrics(self._served.name)

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        queries = [Query.from_row(plain_row(dict(zip(batch, values)))) for values in zip(*batch.values())]
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
                id=query.id, origin=query.source or "", stage="distill", teacher=self._served.name,
                reason=routing.reason, detail=routing.detail, config_hash=self._config_hash,
            )
            return Outcome(None, reject, [])
        try:
            return await distill_query(query, self._served, self._generate, self._verify, self._config_hash)
        except Exception:  # noqa: BLE001 - a bug met by one row rejects that row, with the trace to find it by
            reject = Reject(
                id=query.id, origin=query.source or "", stage="distill", teacher=self._served.name,
                reason="internal_error", detail=traceback.format_exc()[-2000:], config_hash=self._config_hash,
            )
            return Outcome(None, reject, [])


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
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
