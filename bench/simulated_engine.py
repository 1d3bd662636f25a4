"""SIMULATED ENGINE — for the loop benchmark only; never used by the product.

A real engine is too slow on a 2-core machine to run thousands of queries, so this stand-in models what matters for
the feedback loop: continuous batching. Up to `max_num_seqs` requests run at once, each holding its slot for
`tokens × step_s` seconds; the rest wait, first come first served. It answers "What is A + B?" correctly with
probability `pass_rate`, so retries happen as with a real teacher.

The engine keeps its own clock instead of stepping in the actor's event loop. vLLM's engine core is another process:
a busy client loop neither slows it down nor delays handing a freed slot to a request already waiting. So here too a
freed slot goes to the next waiting request at the moment it freed, even when the event loop notices late; a slow
loop shows up as empty slots (requests that were not sent in time), never as a slower engine that hides it.

It writes what the benchmark needs to `stats_path`: when it became ready, its first request, its last finish, the
slot-seconds used, and how many requests it held on average (waiting or running).

Settings come from the teacher's `engine.engine_kwargs`: step_s, max_num_seqs, pass_rate, min_tokens, max_tokens,
stats_path.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field

from pipeline.config import SamplingConfig, TeacherConfig
from pipeline.engine import Candidate
from pipeline.schema import Message

_SUM = re.compile(r"What is (\d+) \+ (\d+)\?")
_FLUSH_EVERY_S = 0.5


@dataclass(order=True)
class _Running:
    ends_at: float
    order: int  # ties on ends_at are broken by admission order, never by comparing futures
    arrived_at: float = field(compare=False)
    done: asyncio.Future = field(compare=False)


@dataclass
class _Waiting:
    arrived_at: float
    seconds: float  # how long it holds a slot once admitted
    done: asyncio.Future


class SimulatedEngine:
    def __init__(self, teacher: TeacherConfig, storage_options: dict | None = None):  # no model to load
        kw = teacher.engine.engine_kwargs
        self._step_s = kw.get("step_s", 0.005)
        self._slots = kw.get("max_num_seqs", 32)
        self._pass_rate = kw.get("pass_rate", 0.5)
        self._tokens = (kw.get("min_tokens", 32), kw.get("max_tokens", 96))
        self._stats_path = kw.get("stats_path")
        self._waiting: deque[_Waiting] = deque()
        self._running: list[_Running] = []  # a heap by end time
        self._admitted = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._first_request_at = self._last_end = None
        self._slot_s = 0.0
        self._request_s = 0.0  # arrival to finish, summed over finished requests
        self._requests = 0
        self._last_flush = 0.0
        self._ready_at = time.monotonic()  # the stage takes requests from here: occupancy is counted from here

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if self._first_request_at is None:
            self._first_request_at = now
        match = _SUM.search(messages[-1].content)
        a, b = (int(match[1]), int(match[2])) if match else (0, 0)
        tokens = [random.randint(*self._tokens) for _ in range(sampling.n)]
        waits = [_Waiting(now, n * self._step_s, loop.create_future()) for n in tokens]
        self._waiting.extend(waits)
        self._requests += len(waits)
        self._advance(now)
        await asyncio.gather(*(w.done for w in waits))
        candidates = []
        for n in tokens:
            answer = a + b if random.random() < self._pass_rate else a + b + 1
            text = f"<think>\nAdd {a} and {b}.\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
            candidates.append(Candidate(text, "stop", 16, n))
        return candidates

    def _advance(self, now: float) -> None:
        """Bring the engine's clock to `now`: finish every request that ended, and give each freed slot to the next
        waiting request from the moment it freed, as an engine running apart from this loop would have."""
        while self._running and self._running[0].ends_at <= now:
            finished = heapq.heappop(self._running)
            self._last_end = max(self._last_end or finished.ends_at, finished.ends_at)
            self._request_s += finished.ends_at - finished.arrived_at
            finished.done.set_result(None)
            if self._waiting:
                waiting = self._waiting.popleft()
                self._admit(waiting, max(waiting.arrived_at, finished.ends_at))
        while self._waiting and len(self._running) < self._slots:
            self._admit(self._waiting.popleft(), now)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        if self._running:
            delay = self._running[0].ends_at - now
            self._timer = asyncio.get_running_loop().call_later(delay, lambda: self._advance(time.monotonic()))
        if not self._running or now - self._last_flush > _FLUSH_EVERY_S:
            self._flush(now)

    def _admit(self, waiting: _Waiting, at: float) -> None:
        self._slot_s += waiting.seconds
        running = _Running(at + waiting.seconds, next(self._admitted), waiting.arrived_at, waiting.done)
        heapq.heappush(self._running, running)

    def _flush(self, now: float) -> None:
        """Stats go to a file as the run goes: Ray may end the actor without calling `shutdown`."""
        self._last_flush = now
        if not self._stats_path or self._last_end is None:
            return
        stats = {
            "slots": self._slots,
            "requests": self._requests,
            "slot_s": self._slot_s,  # every admitted request, finished or not
            "ready_to_first_request_s": self._first_request_at - self._ready_at,
            "window_s": self._last_end - self._ready_at,  # engine ready to last finish
            # Requests waiting or running, time-weighted (Little's law): below `slots`, the loop sends too few.
            "mean_requests_in_engine": self._request_s / (self._last_end - self._ready_at),
            "unfinished": len(self._running) + len(self._waiting),
        }
        with open(self._stats_path, "w") as f:
            json.dump(stats, f)

    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
