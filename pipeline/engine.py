"""The engine interface: what the distill loop needs from a teacher, whatever serves it.

An engine turns a conversation and sampling settings into `n` candidates. The local vLLM pool and the simulated
engine of the benchmarks implement it; nothing else about an engine leaks into the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.config import SamplingConfig
from pipeline.schema import Message


@dataclass(frozen=True)
class Candidate:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


class RequestFailed(Exception):
    """The engine refused this one request (prompt too long, bad parameters); other requests are unaffected."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class Engine(Protocol):
    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]: ...

    def shutdown(self) -> None: ...
