"""Verifier actors, sized independently of the generators: CPU actors for the programs, judge actors for the rest.

Each `VerifierActor` owns a `ResponseVerifier`, whose Math-Verify calls run in a killable child process and whose
code runs in the sandbox. Each `JudgeActor` owns an engine (vLLM or an OpenAI-compatible endpoint) and grades many
answers at once, so the engine's continuous batching has work. Both restart by themselves after a crash and Ray
retries the calls that were in flight; a checker whose sandbox zygote or Math-Verify worker is gone exits on purpose
to be restarted that way. The pool routes each query by the one route table
(`pipeline.verifiers.routes`), and refuses to start when a verifier the config asks for cannot work on the nodes
(a code sandbox that cannot isolate), rather than fail at the first such query.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

import ray

from actors.engines import build_engine
from actors.metrics import VerifierMetrics
from pipeline.config import ConfigError, JudgeConfig, VerifierConfig
from pipeline.engine import EngineBroken
from pipeline.resources import stage_resources
from pipeline.response_format import ResponseFormat
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.dispatch import ResponseVerifier, check_structure_first, unrouted
from pipeline.verifiers.judge import judge_answer
from pipeline.verifiers.killable import WorkerStartFailed
from pipeline.verifiers.routes import Available, Route, Routing, route
from pipeline.verifiers.sandbox import SandboxUnavailable


@ray.remote(max_restarts=-1, max_task_retries=-1)
class VerifierActor:
    def __init__(self, config: dict[str, Any]):
        self._problem: str | None = None
        try:
            self._verifier = ResponseVerifier(VerifierConfig.model_validate(config))
        except SandboxUnavailable as err:
            self._problem = str(err)
        self._metrics = VerifierMetrics()

    def setup_problem(self) -> str | None:
        """Why this actor cannot verify what its config asks for, or None when it can."""
        return self._problem

    def verify(self, query_row: dict[str, Any], response: str, response_format: ResponseFormat, route: Route) -> dict:
        if self._problem is not None:
            raise RuntimeError(self._problem)  # a broken verifier, never a score of 0 for the answer
        query = Query.from_row(query_row)
        started = time.perf_counter()
        try:
            verdict = self._verifier.verify(query, response, response_format, route)
        except (SandboxUnavailable, WorkerStartFailed) as err:
            # Broken here, not by this answer: a new actor gets a new sandbox and Ray retries this call on it.
            print(f"[distillery] verifier: {err}; restarting the actor", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
        self._metrics.observe(query.category.value, time.perf_counter() - started)
        return verdict.to_dict()


@ray.remote(max_restarts=-1, max_task_retries=-1)
class JudgeActor:
    """An async actor: every call in flight is one judgement sharing the engine."""

    def __init__(self, config: dict[str, Any]):
        self._config = JudgeConfig.model_validate(config)
        self._engine = build_engine(self._config)
        self._metrics = VerifierMetrics()

    async def verify(self, query_row: dict[str, Any], response: str, response_format: ResponseFormat,
                     route: Route) -> dict:
        query = Query.from_row(query_row)
        started = time.perf_counter()
        answer, broken = check_structure_first(response, response_format)
        try:
            verdict = broken or await judge_answer(
                query, answer, self._engine.generate, self._config.sampling, self._config.max_retries
            )
        except EngineBroken as err:  # as for teachers: a new actor with a new engine, and Ray retries the call
            print(f"[distillery] judge: {err}; restarting the actor", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
        self._metrics.observe(query.category.value, time.perf_counter() - started)
        return verdict.to_dict()

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


class VerifierPool:
    """Handles to the verifier and judge actors, each used round-robin. Handles pickle, so the pool travels to
    other actors."""

    def __init__(self, checkers: list[ray.actor.ActorHandle], judges: list[ray.actor.ActorHandle], code: bool):
        self.checkers = checkers
        self.judges = judges
        self.available = Available(judge=bool(judges), code=code)
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
        pool = cls(checkers, judges, code=config.code)
        problems = {p for p in ray.get([c.setup_problem.remote() for c in checkers]) if p}
        if problems:
            pool.shutdown()
            raise ConfigError(
                f"verifiers.code: {'; '.join(sorted(problems))}\n"
                "Set `verifiers: {code: false}` to run without code verification (code queries are then rejected "
                "before generation as code_verification_disabled)."
            )
        return pool

    def __reduce__(self):
        return VerifierPool, (self.checkers, self.judges, self.available.code)

    def route(self, query: Query) -> Routing:
        return route(query, self.available)

    async def verify(self, query: Query, response: str, response_format: ResponseFormat) -> Verdict:
        routing = self.route(query)
        if routing.route is None:
            return unrouted(routing)
        handles = self._next_judge if routing.route is Route.judge else self._next_checker
        ref = next(handles).verify.remote(query.to_row(), response, response_format, routing.route)
        return Verdict.from_dict(await ref)

    def shutdown(self) -> None:
        for handle in self.checkers + self.judges:
            ray.kill(handle)
