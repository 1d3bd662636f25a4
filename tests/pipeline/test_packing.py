"""Chat-template tokenization with an assistant mask, first-fit-decreasing packing, and packs that keep their samples
isolated: a packed sample's logits equal those of the sample alone."""

import numpy as np
import pytest

from pipeline.packing import (
    IGNORE_INDEX,
    PackingStats,
    TokenizedSamples,
    build_pack,
    filler_pack,
    first_fit_decreasing,
    tokenize_conversation,
)
from tests.tiny_student import tiny_llama, tokenized, tokenizer

ANSWER = "<think>\n2 and 2 make 4.\n</think>\n<answer>\n4\n</answer>"
SINGLE = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": ANSWER}]
MULTI = SINGLE + [{"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6"}]


def assistant_text(messages):
    tok = tokenizer()
    ids, mask = tokenize_conversation(tok, messages)
    runs, current = [], []
    for token, trained in zip(ids, mask):
        if trained:
            current.append(token)
        elif current:
            runs.append(tok.decode(current))
            current = []
    return runs + ([tok.decode(current)] if current else [])


def test_only_the_assistant_turn_and_its_end_of_turn_token_are_trained():
    assert assistant_text(SINGLE) == [ANSWER + "<|im_end|>"]


def test_every_assistant_turn_of_a_conversation_is_trained():
    assert assistant_text(MULTI) == [ANSWER + "<|im_end|>", "6<|im_end|>"]


def test_tokens_are_those_of_the_chat_template():
    tok = tokenizer()
    ids, mask = tokenize_conversation(tok, MULTI)
    assert ids == tok(tok.apply_chat_template(MULTI, tokenize=False), add_special_tokens=False)["input_ids"]
    assert len(mask) == len(ids)


class RewritingTemplate:
    """Drops the reasoning of earlier turns, as Qwen3's template does: prefixes no longer render as prefixes."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        text = "".join(
            m["content"] if i == last or m["role"] != "assistant" else "[earlier answer]"
            for i, m in enumerate(messages)
        )
        return text + ("<assistant>" if add_generation_prompt else "")


def test_a_template_that_rewrites_earlier_turns_is_refused_rather_than_mis_masked():
    with pytest.raises(ValueError, match="prefixes"):
        tokenize_conversation(RewritingTemplate(), MULTI)


def test_a_pack_restarts_positions_and_never_predicts_across_samples():
    samples = tokenized([([10, 11, 12], [False, True, True]), ([20, 21, 22, 23], [False, False, True, True])])
    pack = build_pack(samples, [0, 1])
    assert pack.input_ids.tolist() == [10, 11, 12, 20, 21, 22, 23]
    assert pack.position_ids.tolist() == [0, 1, 2, 0, 1, 2, 3]
    i = IGNORE_INDEX
    # label t is token t+1 when that is an assistant token of the same sample; a sample's last token predicts nothing
    assert pack.labels.tolist() == [11, 12, i, i, 22, 23, i]
    assert pack.sample_lengths == [3, 4]
    assert pack.target_tokens == 4 == samples.target_tokens.sum()
    assert samples.target_tokens.tolist() == [2, 2] and samples.lengths.tolist() == [3, 4]


def test_a_filler_pack_has_one_token_and_no_target():
    pack = filler_pack(0)
    assert len(pack.input_ids) == 1 and pack.target_tokens == 0 and pack.sample_lengths == []


@pytest.mark.parametrize(
    "lengths, capacity, bins",
    [
        ([5, 4, 3, 2, 1], 6, [[0, 4], [1, 3], [2]]),
        ([3, 3, 3], 9, [[0, 1, 2]]),
        ([3, 3, 3], 3, [[0], [1], [2]]),
        ([2, 7, 2, 7], 9, [[1, 0], [3, 2]]),
        ([], 4, []),
    ],
    ids=["classic", "one-bin", "one-each", "ties-keep-index-order", "empty"],
)
def test_first_fit_decreasing(lengths, capacity, bins):
    assert first_fit_decreasing(lengths, capacity) == bins


def test_packing_respects_capacity_and_places_every_sample_once():
    lengths = np.random.default_rng(0).integers(1, 100, size=500).tolist()
    bins = first_fit_decreasing(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert PackingStats(sum(lengths), len(bins) * 128).efficiency > 0.95


def test_a_sample_over_capacity_is_an_error_for_the_packer():
    with pytest.raises(ValueError, match="capacity"):
        first_fit_decreasing([3, 9], 8)


@pytest.mark.parametrize("attn, tolerance", [("eager", 1e-5), ("sdpa", 1e-4)])
def test_packed_samples_do_not_see_each_other(attn, tolerance):
    import torch

    tok = tokenizer()
    conversations = [SINGLE, MULTI, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]]
    samples = tokenized([tokenize_conversation(tok, c) for c in conversations])
    pack = build_pack(samples, [0, 1, 2])
    model = tiny_llama(attn).eval()
    with torch.no_grad():
        packed = model(input_ids=torch.as_tensor(pack.input_ids)[None],
                       position_ids=torch.as_tensor(pack.position_ids)[None], use_cache=False).logits[0]
        start = 0
        for index in range(3):
            ids, _ = samples.tokens(index)
            alone = model(input_ids=torch.tensor(ids, dtype=torch.long)[None], use_cache=False).logits[0]
            assert torch.allclose(packed[start:start + len(ids)], alone, atol=tolerance), f"sample {index}"
            start += len(ids)


def test_with_the_cache_on_later_samples_attend_across_boundaries():
    """Why the training loop passes use_cache=False: the pitfall this guards against is silent."""
    import torch

    tok = tokenizer()
    samples = tokenized([tokenize_conversation(tok, c) for c in (SINGLE, MULTI)])
    pack = build_pack(samples, [0, 1])
    model = tiny_llama("sdpa").eval()
    first = len(samples.tokens(0)[0])
    with torch.no_grad():
        cached = model(input_ids=torch.as_tensor(pack.input_ids)[None],
                       position_ids=torch.as_tensor(pack.position_ids)[None], use_cache=True).logits[0]
        alone = model(input_ids=torch.tensor(samples.tokens(1)[0], dtype=torch.long)[None]).logits[0]
    assert not torch.allclose(cached[first:], alone, atol=1e-3)


def test_samples_held_in_memory_and_read_from_arrow_are_the_same():
    rows = [([1, 2, 3], [False, True, True]), ([4, 5], [False, True])]
    from_rows, from_arrow = TokenizedSamples.from_rows(rows), tokenized(rows)
    for field in ("input_ids", "assistant_mask", "offsets", "lengths", "target_tokens"):
        assert getattr(from_rows, field).tolist() == getattr(from_arrow, field).tolist(), field


def test_saved_samples_load_memory_mapped_and_unchanged(tmp_path):
    """How the ranks of a node share one copy of the training data."""
    saved = TokenizedSamples.from_rows([([1, 2, 3], [False, True, True]), ([4, 5], [False, True]), ([6], [True])])
    saved.save(tmp_path / "copy")
    loaded = TokenizedSamples.load(tmp_path / "copy")
    assert isinstance(loaded.input_ids, np.memmap) and isinstance(loaded.assistant_mask, np.memmap)
    for field in ("input_ids", "assistant_mask", "offsets", "lengths", "target_tokens"):
        assert getattr(loaded, field).tolist() == getattr(saved, field).tolist(), field
    assert build_pack(loaded, [1, 0]).labels.tolist() == build_pack(saved, [1, 0]).labels.tolist()
