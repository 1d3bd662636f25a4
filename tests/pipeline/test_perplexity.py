"""Perplexity inputs and arithmetic: the response follows the prompt in the reference model's chat template, and only
the response's tokens are averaged. (That the engine's perplexities equal a direct transformers computation is checked
on the job's own output in tests/jobs/test_filter.py, which starts the engine once.)"""

import math
from types import SimpleNamespace

import pytest

from pipeline.perplexity import ScoringInput, perplexity, response_logprobs, scoring_input
from pipeline.response_format import format_response
from tests.tiny_student import tokenizer

RESPONSE = format_response("Two and two make four.", "4")


def sample(prompt: str) -> dict:
    return {"id": "s", "think": "Two and two make four.", "answer": "4",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": RESPONSE}]}


def test_the_prompt_is_the_templated_conversation_before_the_final_turn():
    tok = tokenizer()
    scored = scoring_input(sample("What is 2 + 2?"), tok)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                     tokenize=False)
    assert tok.decode(scored.token_ids[:scored.response_start]) == prompt
    assert tok.decode(scored.token_ids[scored.response_start:]) == RESPONSE


def test_the_counted_tokens_are_the_responses_whatever_the_prompt():
    tok = tokenizer()
    short = scoring_input(sample("2 + 2?"), tok)
    long = scoring_input(sample("Please compute the sum of two and two, showing every step. " * 5), tok)
    response_ids = tok(RESPONSE, add_special_tokens=False)["input_ids"]
    assert short.response_start < long.response_start
    assert short.response_tokens == long.response_tokens == len(response_ids)
    assert short.token_ids[short.response_start:] == long.token_ids[long.response_start:] == response_ids


def test_the_response_logprobs_are_each_position_own_tokens():
    scored = ScoringInput(token_ids=[5, 6, 7, 8], response_start=2)
    # vLLM's shape: one dict per position (None at 0), token id -> an object with `.logprob`.
    logprobs = [None] + [{token: SimpleNamespace(logprob=-0.1 * token), 1: SimpleNamespace(logprob=-9.0)}
                         for token in (6, 7, 8)]
    assert response_logprobs(logprobs, scored) == pytest.approx([-0.7, -0.8])


def test_perplexity_is_exp_of_the_mean_negative_logprob():
    assert perplexity([math.log(0.5)] * 4) == pytest.approx(2.0)
    assert perplexity([0.0]) == 1.0
    with pytest.raises(ValueError, match="no response tokens"):
        perplexity([])
