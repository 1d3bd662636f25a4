"""Perplexity of a sample's response under a reference model, from the prompt log-probabilities vLLM returns.

The scored sequence is the prompt (the sample's messages before its final assistant turn, rendered by the reference
model's chat template with the generation prompt) followed by the canonical response's own tokens; only the
response's tokens count: ppl = exp(-mean log p(token | everything before it)). The prompt's tokens condition the
response but are never averaged in.
This module must never import Ray or vLLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.quality import prompt_and_response


@dataclass(frozen=True)
class ScoringInput:
    token_ids: list[int]  # prompt then response, in the reference model's tokens
    response_start: int  # index of the response's first token

    @property
    def response_tokens(self) -> int:
        return len(self.token_ids) - self.response_start


def scoring_input(sample: dict[str, Any], tokenizer: Any, chat_template_kwargs: dict[str, Any] | None = None
                  ) -> ScoringInput:
    """The token ids to score for a sample (a SAMPLE_SCHEMA row) and where its response starts."""
    prompt, response = prompt_and_response(sample)
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                               **(chat_template_kwargs or {}))
    if hasattr(prompt_ids, "input_ids"):  # transformers 5 returns a BatchEncoding
        prompt_ids = prompt_ids["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ScoringInput([*prompt_ids, *response_ids], len(prompt_ids))


def response_logprobs(prompt_logprobs: Sequence[dict[int, Any] | None], scored: ScoringInput) -> list[float]:
    """The log-probability of each response token, from vLLM's `prompt_logprobs` (one dict per position, token id to
    a `Logprob`, the position's own token among the keys; None at position 0)."""
    return [prompt_logprobs[i][token].logprob
            for i, token in enumerate(scored.token_ids) if i >= scored.response_start]


def perplexity(logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-probability; an empty response has none."""
    if not logprobs:
        raise ValueError("no response tokens to score")
    return math.exp(-sum(logprobs) / len(logprobs))
