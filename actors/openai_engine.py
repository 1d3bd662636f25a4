"""A model (teacher or judge) behind an OpenAI-compatible HTTP endpoint (vLLM server, Ray Serve, hosted API).

Concurrency is bounded per actor, requests can be rate limited, and transient failures (429, 5xx, timeouts,
connection errors) are retried with exponential backoff by the `openai` client. What still fails becomes a
`RequestFailed` for that request alone, with a reason code and whether trying again later may help (`failure_of`);
the row's loop decides what to do with it. Reasoning a server returns apart from the answer
(`reasoning_content`, `reasoning`) is put back in front of it as `<think>…</think>`, as the teacher's config says.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pipeline.config import OpenAIEngineConfig, SamplingConfig, ServedModel
from pipeline.engine import (
    ENDPOINT_ERROR, ENDPOINT_TIMEOUT, ENDPOINT_UNREACHABLE, ENGINE_ERROR, REQUEST_REFUSED, Candidate, RequestFailed,
)
from pipeline.response_format import with_reasoning
from pipeline.schema import Message

# Where OpenAI-compatible servers put reasoning: DeepSeek's API and older vLLM use the first, newer vLLM the second.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


def reasoning_of(message: Any) -> str | None:
    """The reasoning a chat message carries beside its content; the `openai` client keeps unknown fields as extras."""
    extra = getattr(message, "model_extra", None) or {}
    for name in _REASONING_FIELDS:
        value = getattr(message, name, None) or extra.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def failure_of(err: Exception) -> RequestFailed:
    """An exception of the `openai` client (or of reading its response) as a failed request with its reason."""
    import openai

    detail = f"{type(err).__name__}: {err}"[:500]
    if isinstance(err, openai.APITimeoutError):
        return RequestFailed(ENDPOINT_TIMEOUT, detail, retryable=True)
    if isinstance(err, openai.APIConnectionError):
        return RequestFailed(ENDPOINT_UNREACHABLE, detail, retryable=True)
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        if status in (408, 409, 429) or status >= 500:
            return RequestFailed(ENDPOINT_ERROR, detail, retryable=True)
        if status in (401, 403, 404):  # key, permission, URL or model name: no request here will do better
            return RequestFailed(ENDPOINT_ERROR, detail, retryable=False)
        return RequestFailed(REQUEST_REFUSED, detail, retryable=False)
    # A body that is not a chat completion (an HTML error page, a proxy's reply): possibly a passing fault.
    return RequestFailed(ENGINE_ERROR, detail, retryable=True)


def request_extra_body(config: OpenAIEngineConfig) -> dict[str, Any] | None:
    """`extra_body` with `chat_template_kwargs` merged into the body's own (the way vLLM servers read them)."""
    body = dict(config.extra_body)
    if config.chat_template_kwargs:
        body["chat_template_kwargs"] = {**body.get("chat_template_kwargs", {}), **config.chat_template_kwargs}
    return body or None


class OpenAIEngine:
    def __init__(self, served: ServedModel, storage_options: dict[str, Any] | None = None):
        import openai

        del storage_options  # the model lives behind the endpoint

        config = served.engine
        assert isinstance(config, OpenAIEngineConfig)
        api_key = os.environ.get(config.api_key_env, "") if config.api_key_env else "none"
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url, api_key=api_key or "none", max_retries=config.max_retries,
            timeout=config.timeout_s,
        )
        self._model = served.model
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._interval = 1.0 / config.requests_per_s if config.requests_per_s else 0.0
        self._next_start = 0.0
        self._reasoning = config.reasoning
        self._extra_body = request_extra_body(config)

    async def _wait_for_rate_limit(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        await asyncio.sleep(start - now)

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        try:
            return await self._generate(messages, sampling)
        except RequestFailed:
            raise
        except Exception as err:  # noqa: BLE001 - every failure of one request is that request's, never the actor's
            raise failure_of(err) from err

    async def _generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        async with self._slots:
            await self._wait_for_rate_limit()
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=[m.model_dump() for m in messages],
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=sampling.seed,
                extra_body=self._extra_body,
            )
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        choices = sorted(response.choices or [], key=lambda c: c.index)
        if not choices:
            raise RequestFailed(ENGINE_ERROR, "the response holds no choices", retryable=True)
        # Usage is reported per request; split the completion tokens evenly over the choices.
        per_choice = completion_tokens // max(len(choices), 1)
        return [
            Candidate(self._text(c.message), c.finish_reason or "stop", prompt_tokens, per_choice) for c in choices
        ]

    def _text(self, message: Any) -> str:
        return with_reasoning(reasoning_of(message), message.content or "", self._reasoning)

    def shutdown(self) -> None:
        pass
