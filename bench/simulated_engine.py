"""SIMULATED ENGINE — for the generator-busy benchmark only; never used by the product.

A real engine is too slow on a 2-core machine to run thousands of queries, so this stand-in models what matters for
the feedback loop: continuous batching. Up to `max_num_seqs` requests run at once; every `step_s` each running
request gains one token; the rest wait. It answers "What is A + B?" correctly with probability `pass_rate`, so
retries happen as with a real teacher. It records how much of the time it had work, for the benchmark to read.

Settings come from the teacher's `engine.engine_kwargs`: step_s, max_num_seqs, pass_rate, min_tokens, max_tokens,
stats_path.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field

from pipeline.config import SamplingConfig, TeacherConfig
from pipeline.engine import Candidate
from pipeline.schema import Message

_SUM = re.compile(r"What is (\d+) \+ (\d+)\?")


@dataclass
class _Request:
    tokens: int
    tokens_left: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SimulatedEngine:
    def __init__(self, teacher: TeacherConfig):
        kw = teacher.engine.engine_kwargs
        self._step_s = kw.get("step_s", 0.005)
        self._slots = kw.get("max_num_seqs", 32)
        self._pass_rate = kw.get("pass_rate", 0.5)
        self._tokens = (kw.get("min_tokens", 32), kw.get("max_tokens", 96))
        self._stats_path = kw.get("stats_path")
        self._waiting: list[_Request] = []
        self._running: list[_Request] = []
        self._loop_task: asyncio.Task | None = None
        self._first_request = self._last_done = None
        self._busy_s = self._slot_s = 0.0
        self._steps = 0
        self._last_flush = time.monotonic()

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        match = _SUM.search(messages[-1].content)
        a, b = (int(match[1]), int(match[2])) if match else (0, 0)
        requests = [_Request(random.randint(*self._tokens)) for _ in range(sampling.n)]
        for request in requests:
            request.tokens_left = request.tokens
        for request in requests:
            self._waiting.append(request)
        if self._first_request is None:
            self._first_request = time.monotonic()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run())
        await asyncio.gather(*(r.done for r in requests))
        candidates = []
        for request in requests:
            answer = a + b if random.random() < self._pass_rate else a + b + 1
            text = f"<think>\nAdd {a} and {b}.\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
            candidates.append(Candidate(text, "stop", 16, request.tokens))
        return candidates

    async def _run(self) -> None:
        while self._waiting or self._running:
            while self._waiting and len(self._running) < self._slots:
                self._running.append(self._waiting.pop(0))
            started = time.monotonic()
            await asyncio.sleep(self._step_s)
            elapsed = time.monotonic() - started
            self._busy_s += elapsed
            self._slot_s += elapsed * len(self._running) / self._slots
            self._steps += 1
            still = []
            for request in self._running:
                request.tokens_left -= 1
                if request.tokens_left > 0:
                    still.append(request)
                else:
                    request.done.set_result(None)
            self._running = still
            self._last_done = time.monotonic()
            if self._last_done - self._last_flush > 0.5:
                self._flush()
        self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._stats_path or self._first_request is None:
            return
        window = (self._last_done or self._first_request) - self._first_request
        with open(self._stats_path, "w") as f:
            json.dump({"window_s": window, "busy_s": self._busy_s, "slot_s": self._slot_s}, f)

    def shutdown(self) -> None:
        self._flush()
