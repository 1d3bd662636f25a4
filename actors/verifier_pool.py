"""Verifier actors, sized independently of the generators: CPU actors for the programs, judge actors for the rest.

Each `VerifierActor` owns a `ResponseVerifier`, whose Math-Verify calls run in a killable child process and whose
code runs in the sandbox. Each `JudgeActor` owns an engine (vLLM or an OpenAI-compatible endpoint) and grades many
answers at once, so the engine's continuous batching has work. Both restart by themselves after a crash and Ray
retries the calls that were in flight; a checker whose sandbox zygote or Math-Verify worker is gone exits on purpose
to be restarted that way. The pool routes each query by the one route table
(`pipeline.verifiers.routes`), and refuses to start when a verifier the config asks for cannot work on the nodes
(a code sandbox that cannot isolate), rather than fail at the first such query.

Each kind is an autoscaling pool between `replicas` and `max_replicas`: a `PoolSupervisor` on the driver's node owns
the actors and adds some while calls queue for them (their resource requests are what an autoscaler scales the
cluster by) or retires some when idle. The pool object travels to the actors that verify; each copy learns the
current members from the supervisor every few seconds, in the same call that reports its calls in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import sys
import time
import uuid
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.engines import build_engine
from actors.metrics import VerifierMetrics
from pipeline.config import ConfigError, JudgeConfig, VerifierConfig
from pipeline.engine import EngineBroken
from pipeline.resources import pool_range, stage_resources
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

    async def setup_problem(self) -> str | None:
        """None once the engine is up: a judge has nothing to refuse (the supervisor asks every new member)."""
        return None

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


# How often a busy pool copy reports its calls in flight and picks up the current members; also the supervisor's
# tick. Reports ride in the background, never on a verify call's path.
REFRESH_S = 2.0
# A report older than this is from a copy that is gone (an idle copy reports 0 once, then stays quiet).
STALE_S = 5 * REFRESH_S
# Load must stay above the bound this long before the pool grows: one burst of answers is no reason for a node.
GROW_AFTER_S = 2 * REFRESH_S
# A retired member leaves the list at once but lives this much longer: every busy copy has the new list by then.
RETIRE_GRACE_S = 3 * REFRESH_S
# A checker runs one verification at a time: more calls than this per checker means answers queue behind it.
CHECKER_BUSY_CALLS = 2
# Without `max_num_seqs`, vLLM batches about this many sequences (its usual default); a judgement is one sequence.
VLLM_DEFAULT_SEQS = 256

_MEMBERS = {"checker": VerifierActor, "judge": JudgeActor}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class PoolSupervisor:
    """Owns one pool (checkers or judges) and sizes it between `low` and `high` members by the calls in flight that
    the pool's copies report. It grows when they stay above `busy_calls` per member: each new member asks for its
    resources, which an autoscaler sees as demand and brings up a node for. It retires a member when the others
    could carry the load for `idle_s`. A new member is handed out only once it is up, so calls never queue behind a
    node that is still starting. The members are owned by this actor and die with it."""

    def __init__(self, kind: str, options: dict[str, Any], config: dict[str, Any], low: int, high: int,
                 busy_calls: int, idle_s: float):
        self._kind, self._config = kind, config
        self._make = _MEMBERS[kind].options(**options)
        self._low, self._high, self._busy_calls, self._idle_s = low, high, busy_calls, idle_s
        # The first members are handed out at once: the run needs them anyway, and waits for them as it starts.
        self._ready = [self._make.remote(config) for _ in range(low)]
        self._starting: list[ray.actor.ActorHandle] = []  # asked for, possibly waiting for a node
        self._retiring: list[tuple[float, ray.actor.ActorHandle]] = []  # (kill at, member)
        self._reports: dict[str, tuple[float, int]] = {}  # copy -> (when, calls in flight)
        self._busy_since: float | None = None
        self._idle_since: float | None = None
        self._sizer: asyncio.Task | None = None
        self._admitting: set[asyncio.Task] = set()  # held, or asyncio may drop them

    async def members(self) -> list[ray.actor.ActorHandle]:
        if self._sizer is None:  # the first call starts the sizing loop: an actor's __init__ has no running loop
            self._sizer = asyncio.get_running_loop().create_task(self._size_loop())
        return list(self._ready)

    async def problems(self) -> list[str]:
        """Why members cannot verify what their config asks for (the sandbox on this node), once they are up."""
        return [p for p in await asyncio.gather(*(m.setup_problem.remote() for m in self._ready)) if p]

    async def report(self, copy: str, in_flight: int) -> list[ray.actor.ActorHandle]:
        self._reports[copy] = (time.monotonic(), in_flight)
        return await self.members()

    async def _size_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            self._resize(time.monotonic())

    def _resize(self, now: float) -> None:
        for entry in [r for r in self._retiring if r[0] <= now]:
            self._retiring.remove(entry)
            ray.kill(entry[1])
        in_flight = sum(n for at, n in self._reports.values() if now - at < STALE_S)
        wanted = min(self._high, max(self._low, math.ceil(in_flight / self._busy_calls)))
        size = len(self._ready) + len(self._starting)
        self._busy_since = (self._busy_since or now) if wanted > size else None
        self._idle_since = (self._idle_since or now) if wanted < size else None
        if self._busy_since is not None and now - self._busy_since >= GROW_AFTER_S:
            for _ in range(wanted - size):
                member = self._make.remote(self._config)
                self._starting.append(member)
                task = asyncio.get_running_loop().create_task(self._admit(member))
                self._admitting.add(task)
                task.add_done_callback(self._admitting.discard)
            self._say(f"{size} → {wanted} ({in_flight} calls in flight)")
            self._busy_since = None
        elif self._idle_since is not None and now - self._idle_since >= self._idle_s:
            # A member still starting goes first: it has no calls, and its request may be holding a node up.
            if self._starting:
                ray.kill(self._starting.pop())
            else:
                self._retiring.append((now + RETIRE_GRACE_S, self._ready.pop()))
            self._say(f"{size} → {size - 1} ({in_flight} calls in flight)")
            self._idle_since = now  # one at a time, each after its own idle period

    async def _admit(self, member: ray.actor.ActorHandle) -> None:
        try:
            problem = await member.setup_problem.remote()
        except ray.exceptions.ActorDiedError:
            return  # retired while it waited for a node
        if member not in self._starting:
            return
        self._starting.remove(member)
        if problem:
            # This node cannot do what the first ones could: growing onto more such nodes would only repeat it.
            ray.kill(member)
            self._high = len(self._ready) + len(self._starting)
            self._say(f"stays at {self._high}: a new member could not start: {problem}")
            return
        self._ready.append(member)

    def _say(self, text: str) -> None:
        print(f"[distillery] {self._kind}s: {text}", file=sys.stderr, flush=True)


class _Members:
    """One pool copy's view of a supervised pool: the members it sends calls to, round-robin, and its calls in flight,
    which it reports to the supervisor every REFRESH_S while it has any, getting the current members back."""

    def __init__(self, supervisor: ray.actor.ActorHandle, members: list[ray.actor.ActorHandle]):
        self.supervisor = supervisor
        self.members = members
        self.in_flight = 0
        self._turn = itertools.count()
        self._reporter: asyncio.Task | None = None

    def pick(self) -> ray.actor.ActorHandle:
        return self.members[next(self._turn) % len(self.members)]

    def started(self, copy: str) -> None:
        self.in_flight += 1
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report_while_busy(copy))

    async def refresh(self, copy: str) -> None:
        self.members = await self.supervisor.report.remote(copy, self.in_flight) or self.members

    async def _report_while_busy(self, copy: str) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh(copy)
            except ray.exceptions.RayError as err:  # the supervisor restarting: keep the members we have
                print(f"[distillery] verifier pool: no report this time: {err}", file=sys.stderr, flush=True)
            if not self.in_flight:
                return  # it reported 0: idle copies stay quiet


class VerifierPool:
    """Checkers and judges, each a supervised pool used round-robin. The pool pickles, so it travels to the actors
    that verify (teacher and evaluation stages); every copy tracks its own calls in flight."""

    def __init__(self, checkers: _Members, judges: _Members | None, code: bool):
        self._copy = uuid.uuid4().hex  # every unpickled copy reports as itself
        self._checkers = checkers
        self._judges = judges
        self.available = Available(judge=judges is not None, code=code)

    @classmethod
    def start(cls, config: VerifierConfig, judge: JudgeConfig | None) -> "VerifierPool":
        # The supervisors stay on the driver's node: their members die with them, and that node lives as long as
        # the job does, whereas a worker node may go away with the autoscaler or a spot reclaim.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        supervisor = PoolSupervisor.options(scheduling_strategy=here)
        low, high = pool_range(config)
        checkers = supervisor.remote("checker", {"num_cpus": config.num_cpus}, config.model_dump(), low, high,
                                     CHECKER_BUSY_CALLS, config.idle_s)
        judges = None
        if judge is not None:
            engine = judge.engine
            cpus, gpus = stage_resources(engine)
            busy = engine.max_concurrency if engine.kind == "openai" else engine.engine_kwargs.get(
                "max_num_seqs", VLLM_DEFAULT_SEQS)
            judge_supervisor = supervisor.remote(
                "judge", {"num_cpus": cpus, "num_gpus": gpus}, judge.model_dump(mode="json"), *pool_range(engine), busy,
                config.idle_s,
            )
            judges = _Members(judge_supervisor, ray.get(judge_supervisor.members.remote()))
        pool = cls(_Members(checkers, ray.get(checkers.members.remote())), judges, code=config.code)
        problems = set(ray.get(checkers.problems.remote()))
        if problems:
            pool.shutdown()
            raise ConfigError(
                f"verifiers.code: {'; '.join(sorted(problems))}\n"
                "Set `verifiers: {code: false}` to run without code verification (code queries are then rejected "
                "before generation as code_verification_disabled)."
            )
        return pool

    def __reduce__(self):
        judges = self._judges and (self._judges.supervisor, self._judges.members)
        return _unpickle_pool, ((self._checkers.supervisor, self._checkers.members), judges, self.available.code)

    def route(self, query: Query) -> Routing:
        return route(query, self.available)

    async def verify(self, query: Query, response: str, response_format: ResponseFormat) -> Verdict:
        routing = self.route(query)
        if routing.route is None:
            return unrouted(routing)
        pool = self._judges if routing.route is Route.judge else self._checkers
        pool.started(self._copy)
        try:
            for _ in range(3):
                try:
                    ref = pool.pick().verify.remote(query.to_row(), response, response_format, routing.route)
                    return Verdict.from_dict(await ref)
                except ray.exceptions.ActorDiedError:
                    # A member retired after this copy last looked (one that crashes restarts instead, and Ray
                    # retries the call): ask for the current members and send the call again.
                    await pool.refresh(self._copy)
            raise RuntimeError(f"no live {routing.route.value} verifier after 3 tries")
        finally:
            pool.in_flight -= 1

    def shutdown(self) -> None:
        for pool in filter(None, [self._checkers, self._judges]):
            ray.kill(pool.supervisor)  # its members die with it


def _unpickle_pool(checkers: tuple, judges: tuple | None, code: bool) -> VerifierPool:
    return VerifierPool(_Members(*checkers), judges and _Members(*judges), code)
