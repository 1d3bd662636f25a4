"""The perplexity scorer: a Ray Data actor (`map_batches` with an `ActorPoolStrategy`) owning an offline vLLM `LLM`.

Each batch of samples (id, messages, think, answer, and any other columns) comes back with `ppl` and
`reference_tokens` added. The engine runs every sequence as a prompt with
`SamplingParams(max_tokens=1, prompt_logprobs=0)`, which returns each prompt token's own log-probability;
`pipeline.perplexity` turns those into the response's perplexity. Prefix caching is off, because a
cached prefix gets no prompt log-probabilities, and the tokens of one engine step are capped
(`max_num_batched_tokens`) so the log-softmax over [tokens, vocab] stays bounded however long the samples are. A
sample longer than the engine's `max_model_len` is not sent: its ppl is null and `reference_tokens` says why.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from actors.vllm_engine import engine_arguments
from pipeline.config import PerplexityFilterConfig, ServedModel
from pipeline.perplexity import perplexity, response_logprobs, scoring_input


class PerplexityScorer:
    def __init__(self, config: PerplexityFilterConfig, storage_options: dict[str, Any] | None = None):
        from vllm import LLM, SamplingParams

        arguments = engine_arguments(
            ServedModel(model=config.model, engine=config.engine), storage_options, sampling=False
        )
        self._llm = LLM(
            **arguments,
            enable_prefix_caching=False,
            max_num_batched_tokens=config.max_batch_tokens,
        )
        self._tokenizer = self._llm.get_tokenizer()
        self._max_model_len = config.engine.max_model_len
        self._chat_template_kwargs = config.engine.chat_template_kwargs
        self._params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select(["id", "messages", "think", "answer"]).to_pylist()
        inputs = [scoring_input(row, self._tokenizer, self._chat_template_kwargs) for row in rows]
        # A sequence needs room for the one token the engine generates after it.
        fits = [i for i, scored in enumerate(inputs) if len(scored.token_ids) < self._max_model_len]
        ppls: list[float | None] = [None] * len(rows)
        outputs = self._llm.generate(
            [{"prompt_token_ids": inputs[i].token_ids} for i in fits], self._params, use_tqdm=False
        )
        for i, output in zip(fits, outputs):
            ppls[i] = perplexity(response_logprobs(output.prompt_logprobs, inputs[i]))
        batch = batch.append_column(pa.field("ppl", pa.float64()), pa.array(ppls, pa.float64()))
        return batch.append_column(pa.field("reference_tokens", pa.int64()),
                                   pa.array([len(scored.token_ids) for scored in inputs], pa.int64()))
