"""The evaluation stage: a Ray Data callable class that owns one engine of the model under evaluation.

Each benchmark problem is ONE request for all its samples (`n` = the benchmark's samples per problem), so the engine
shares the prompt's prefill across them; every candidate it returns is kept and scored by the verifier pool. A
candidate cut off at max tokens scores 0 as `truncated` (`pipeline.regenerate._judge`, as in distillation). A failed
request is tried again after a backoff, up to the model's `request_attempts`; then the problem becomes a reject with
the failure's reason, never a sample. Faults cost one problem: a bug met by one problem rejects it with the trace,
and only a dead engine ends the actor (`EngineStage`), whose batches Ray Data then retries on a new one.

Output per problem: `samples`, the JSON list of its EVAL_SAMPLE_SCHEMA rows (all n, committed together by the
driver), or `reject`, one REJECT_SCHEMA row as JSON.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

import numpy as np

from actors.teacher import EngineStage, plain_row
from actors.verifier_pool import VerifierPool
from pipeline.config import EvalModel
from pipeline.engine import Candidate, RequestFailed
from pipeline.eval_metrics import vote_key
from pipeline.regenerate import _judge, backoff_s, conversation_prefix
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

STAGE = "evaluate"  # the `stage` of a reject written by this job


class EvalStage(EngineStage):
    role = "model"

    def __init__(
        self, model: dict[str, Any], samples: dict[str, int], verifiers: VerifierPool, config_hash: str,
        storage_options: dict[str, Any] | None = None, engine_class: str | None = None,
    ):
        super().__init__(EvalModel.model_validate(model), verifiers, engine_class, storage_options)
        self._samples = samples  # per benchmark
        self._config_hash = config_hash
        self._engine_version = engine_version(self._served)

    async def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        results = await asyncio.gather(
            *(self._evaluate(str(row["benchmark"]), Query.from_row(plain_row(row))) for row in rows)
        )
        return {
            "benchmark": [str(row["benchmark"]) for row in rows],
            "samples": [None if samples is None else json.dumps(samples) for samples, _ in results],
            "reject": [None if reject is None else json.dumps(reject) for _, reject in results],
            "engine_ready_at": [self._ready_at] * len(rows),
            "engine_version": [self._engine_version] * len(rows),
        }

    async def _evaluate(self, benchmark: str, query: Query) -> tuple[list[dict] | None, dict | None]:
        routing = self._verifiers.route(query)
        if routing.route is None:  # nothing of this run can score it: generating would only burn engine time
            return None, self._reject(query, routing.reason, routing.detail, 0)
        try:
            candidates, failed = await self._generate_all(query, self._samples[benchmark])
            if candidates is None:
                return None, self._reject(query, failed.reason, str(failed), self._served.request_attempts)
            verdicts = await asyncio.gather(*(_judge(c, query, self._verify) for c in candidates))
            return [self._sample(benchmark, query, i, c, v) for i, (c, v) in enumerate(zip(candidates, verdicts))], None
        except Exception:  # noqa: BLE001 - a bug met by one problem rejects that problem, with the trace to find it by
            return None, self._reject(query, "internal_error", traceback.format_exc()[-2000:], 1)

    async def _generate_all(self, query: Query, n: int) -> tuple[list[Candidate] | None, RequestFailed | None]:
        """The problem's n candidates, or the last failure once its tries are spent (or it cannot succeed)."""
        messages = conversation_prefix(self._served, query) + list(query.messages)
        sampling = self._served.sampling.model_copy(update={"n": n})
        for attempt in range(1, self._served.request_attempts + 1):
            try:
                return await self._generate(messages, sampling), None
            except RequestFailed as err:
                if not err.retryable or attempt == self._served.request_attempts:
                    return None, err
                await asyncio.sleep(backoff_s(self._served.faults, attempt))
        raise AssertionError("unreachable: the last attempt returns")

    def _sample(self, benchmark: str, query: Query, index: int, candidate: Candidate, verdict: Verdict) -> dict:
        return {
            "model": self._served.name,
            "benchmark": benchmark,
            "problem_id": query.id,
            "sample": index,
            "category": query.category.value,
            "response": candidate.text,
            "answer": vote_key(query, candidate.text, self._served.response_format),
            "score": verdict.score,
            "correct": verdict.score >= 1.0 and verdict.failure is None,
            "verifier": verdict.verifier,
            "verify_details": json.dumps(verdict.details),
            "failure": verdict.failure,
            "prompt_tokens": candidate.prompt_tokens,
            "completion_tokens": candidate.completion_tokens,
            "finish_reason": candidate.finish_reason,
            "config_hash": self._config_hash,
        }

    def _reject(self, query: Query, reason: str, detail: str, attempts: int) -> dict:
        return reject_row(query.id, query.source or "", STAGE, self._served.name, reason, detail, self._config_hash,
                          attempts)


def reject_row(
    problem_id: str | None, origin: str, stage: str, model: str, reason: str, detail: str, config_hash: str,
    attempts: int = 0,
) -> dict[str, Any]:
    """A REJECT_SCHEMA row of this job: `teacher` holds the model's name."""
    return {
        "id": problem_id, "origin": origin, "stage": stage, "teacher": model, "reason": reason, "detail": detail,
        "attempts": attempts, "best_score": None, "raw": None, "config_hash": config_hash,
    }


def engine_version(model: EvalModel) -> str | None:
    """The vLLM this actor runs (for results.json's protocol); None for an HTTP endpoint, whose server is unknown."""
    if model.engine.kind != "vllm":
        return None
    import vllm

    return vllm.__version__
