"""Verifier actors, sized independently of the generators: CPU actors for the programs, judge actors for the rest.

Each `VerifierActor` owns a `ResponseVerifier`, whose Math-Verify calls run in a killable child process. Each
`JudgeActor` owns an engine (vLLM or an OpenAI-compatible endpoint) and grades many answers at once, so the
engine's continuous batching has work. Both restart by themselves after a crash and Ray retries the calls that
were in flight. The pool sends each query to the right kind.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import ray

from actors.engines import build_engine
from actors.metrics import VerifierMetrics
from pipeline.config import JudgeConfig, VerifierConfig
from pipeline.resources import stage_resources
from pipeline.response_format import ResponseFormat
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.dispatch import ResponseVerifier, can_verify, check_structure_first
from pipeline.verifiers.judge import judge_answer, needs_judge


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


@ray.remote(max_restarts=-1, max_task_retries=-1)
class JudgeActor:
    """An async actor: every call in flight is one judgement sharing the engine."""

    def __init__(self, config: dict[str, Any]):
        self._config = JudgeConfig.model_validate(config)
        self._engine = build_engine(self._config)
        self._metrics = VerifierMetrics()

    async def verify(self, query_row: dict[str, Any], response: str, response_format: ResponseFormat) -> dict:
        query = Query.from_row(query_row)
        started = time.perf_counter()
        verdict = await self._judge(query, response, response_format)
        self._metrics.observe(query.category.value, time.perf_counter() - started)
        return verdict.to_dict()

    async def _judge(self, query: Query, response: str, response_format: ResponseFormat) -> Verdict:
        answer, broken = check_structure_first(response, response_format)
        if broken is not None:
            return broken
        return await judge_answer(
            query, answer, self._engine.generate, self._config.sampling, self._config.max_retries
        )

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


class VerifierPool:
    """Handles to the verifier and judge actors, each used round-robin. Handles pickle, so the pool travels to
    other actors."""

    def __init__(self, checkers: list[ray.actor.ActorHandle], judges: list[ray.actor.ActorHandle]):
        self.checkers = checkers
        self.judges = judges
        self._next_checker = itertools.cycle(checkers)
        self._next_judge = itertools.cycle(judges)

    @classmethod
    def start(cls, config: VerifierConfig, judge: JudgeConfig | None) -> "VerifierPool":
        checker = VerifierActor.options(num_cpus=config.num_cpus)
        checkers = [checker.remote(config.model_dump()) for _ in range(config.replicas)]
        judges = []
        if judge is not None:
            cpus, gpus = stage_resources(judge.engine)
            actor = JudgeActor.options(num_cpus=cpus, num_gpus=gpus)
            judges = [actor.remote(judge.model_dump(mode="json")) for _ in range(judge.engine.replicas)]
        return cls(checkers, judges)

    def __reduce__(self):
        return VerifierPool, (self.checkers, self.judges)

    def can_verify(self, query: Query) -> bool:
        return can_verify(query, judge=bool(self.judges))

    def verify(self, query: Query, response: str, response_format: ResponseFormat) -> ray.ObjectRef:
        handles = self._next_judge if self.judges and needs_judge(query) else self._next_checker
        return next(handles).verify.remote(query.to_row(), response, response_format)

    def shutdown(self) -> None:
        for handle in self.checkers + self.judges:
            ray.kill(handle)
