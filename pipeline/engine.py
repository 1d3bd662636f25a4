"""The engine interface: what the distill loop needs from a teacher, whatever serves it.

An engine turns a conversation and sampling settings into `n` candidates. The local vLLM pool, the OpenAI-compatible
client and the simulated engine of the benchmarks implement it; nothing else about an engine leaks into the loop.

An engine fails in one of two ways. `RequestFailed`: this one request went wrong (refused, timed out, the server
erred); the row's loop records it as an attempt and, when `retryable`, tries again after a backoff. `EngineBroken`:
the engine itself is gone (its process died); every request on it would fail, so the actor holding it exits and Ray
starts a new one, retrying the rows it had in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.config import SamplingConfig
from pipeline.schema import Message

# Why a request failed, as recorded in attempts and rejects. The first four are the endpoint's doing.
REQUEST_REFUSED = "request_refused"  # 4xx for this request: prompt too long, bad parameters
ENDPOINT_ERROR = "endpoint_error"  # 5xx, 429 after the client's retries, or 401/403/404: the endpoint's side
ENDPOINT_TIMEOUT = "endpoint_timeout"
ENDPOINT_UNREACHABLE = "endpoint_unreachable"  # connection refused or dropped
PROMPT_TOO_LONG = "prompt_too_long"  # a local engine's own check against max_model_len
ENGINE_ERROR = "engine_error"  # anything else an engine raised for one request (a malformed response body)
# Failures that say more about the endpoint than the row; a teacher whose rows keep ending in them is stopped.
REQUEST_FAILURES = frozenset({REQUEST_REFUSED, ENDPOINT_ERROR, ENDPOINT_TIMEOUT, ENDPOINT_UNREACHABLE, ENGINE_ERROR})


@dataclass(frozen=True)
class Candidate:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


class RequestFailed(Exception):
    """One request failed; other requests are unaffected. `retryable`: the same request may well succeed later."""

    def __init__(self, reason: str, detail: str, retryable: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.retryable = retryable


class EngineBroken(Exception):
    """The engine cannot serve any request any more (its process died): the actor holding it must be replaced."""


class Engine(Protocol):
    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]: ...

    def shutdown(self) -> None: ...
