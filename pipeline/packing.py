"""Student SFT inputs: chat-template tokenization with an assistant mask, and bin packing into fixed-size rows.

A pack lays several samples end to end in one row of at most `max_seq_len` tokens. Position ids restart at 0 for
each sample and labels are shifted within each sample, so no token is trained to predict across a boundary. The model
must see the pack with `attention_mask=None` and `use_cache=False` (sdpa/eager) or through flash-attn varlen, which
both derive the sample boundaries from the position ids; with the cache on, later samples silently attend to earlier
ones (ENVIRONMENT.md, "packing pitfall"). Samples longer than `max_seq_len` are dropped and counted, never truncated.
This module must never import Ray or torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

IGNORE_INDEX = -100  # label of tokens that carry no loss (cross-entropy's ignore_index)

TOKENIZED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("assistant_mask", pa.list_(pa.bool_())),  # True for the tokens the student learns to write
        ("error", pa.string()),  # why the sample could not be tokenized (its token lists are then empty), else null
    ]
)


def tokenize_conversation(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[bool]]:
    """Token ids of `messages` rendered by the tokenizer's chat template, and which of them are assistant tokens.

    An assistant turn spans from the end of the generation prompt before it to the end of its rendered turn, the
    end-of-turn token included and the whitespace after it left out: the student learns to stop. The spans come from
    rendering prefixes of the conversation, which needs a template whose prefixes render as prefixes (templates that
    rewrite earlier turns, such as Qwen3 dropping old reasoning, are refused rather than mis-masked).
    """
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        turn = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False).rstrip()
        if not (text.startswith(prompt) and text.startswith(turn) and len(prompt) < len(turn)):
            raise ValueError("the chat template does not render a conversation's prefixes as its prefixes")
        spans.append((len(prompt), len(turn)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [any(start < end_span and end > start_span for start_span, end_span in spans)
            for start, end in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), mask


class TokenizedSamples:
    """Tokenized samples held as flat NumPy arrays plus offsets, so millions of them cost 5 bytes a token. Saved as
    `.npy` files, they load memory-mapped: the ranks of a node then share one copy in the page cache."""

    ARRAYS = ("input_ids", "assistant_mask", "offsets", "target_tokens")

    def __init__(
        self, input_ids: np.ndarray, assistant_mask: np.ndarray, offsets: np.ndarray,
        target_tokens: np.ndarray | None = None,
    ):
        self.input_ids, self.assistant_mask, self.offsets = input_ids, assistant_mask, offsets
        self.lengths = np.diff(offsets)
        if target_tokens is None:
            # The label at position t is token t+1, so a sample's first token is never a target.
            seen = np.concatenate([[0], np.cumsum(assistant_mask, dtype=np.int64)])
            target_tokens = seen[offsets[1:]] - seen[np.minimum(offsets[:-1] + 1, offsets[1:])]
        self.target_tokens = target_tokens

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in self.ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> "TokenizedSamples":
        return cls(**{name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in cls.ARRAYS})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "TokenizedSamples":
        ids = table.column("input_ids").combine_chunks()
        mask = table.column("assistant_mask").combine_chunks().flatten()
        offsets = ids.offsets.to_numpy().astype(np.int64)
        return cls(ids.flatten().to_numpy(), mask.to_numpy(zero_copy_only=False), offsets - offsets[0])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Sequence[int], Sequence[bool]]]) -> "TokenizedSamples":
        """From (input_ids, assistant_mask) pairs held in memory, as `tokenize_conversation` returns them."""
        offsets = np.concatenate([[0], np.cumsum([len(ids) for ids, _ in rows], dtype=np.int64)])
        ids = np.fromiter((t for row, _ in rows for t in row), dtype=np.int32, count=int(offsets[-1]))
        mask = np.fromiter((m for _, row in rows for m in row), dtype=bool, count=int(offsets[-1]))
        return cls(ids, mask, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def tokens(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.input_ids[start:end], self.assistant_mask[start:end]


@dataclass(frozen=True)
class Pack:
    """One row of the model's input: samples end to end."""

    input_ids: np.ndarray
    position_ids: np.ndarray  # restart at 0 for each sample
    labels: np.ndarray  # next token where it is an assistant token of the same sample, else IGNORE_INDEX
    sample_lengths: list[int]  # empty for a filler pack

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def build_pack(samples: TokenizedSamples, indices: Sequence[int]) -> Pack:
    ids, positions, labels = [], [], []
    for index in indices:
        sample_ids, mask = samples.tokens(index)
        ids.append(sample_ids)
        positions.append(np.arange(len(sample_ids)))
        shifted = np.full(len(sample_ids), IGNORE_INDEX, dtype=np.int64)
        shifted[:-1] = np.where(mask[1:], sample_ids[1:], IGNORE_INDEX)
        labels.append(shifted)
    return Pack(
        np.concatenate(ids).astype(np.int64), np.concatenate(positions), np.concatenate(labels),
        [len(i) for i in ids],
    )


@dataclass(frozen=True)
class PaddedBatch:
    """The layout packing replaces, kept as its baseline: one sample per row, padded to the longest, with an attention
    mask. The benchmark and the packed-equals-unpacked test compare against it."""

    input_ids: np.ndarray  # [samples, longest]
    attention_mask: np.ndarray
    labels: np.ndarray


def build_padded_batch(samples: TokenizedSamples, indices: Sequence[int], pad_id: int) -> PaddedBatch:
    rows = [build_pack(samples, [i]) for i in indices]
    width = max(len(r.input_ids) for r in rows)

    def padded(values: list[np.ndarray], fill: int) -> np.ndarray:
        return np.stack([np.pad(v, (0, width - len(v)), constant_values=fill) for v in values])

    return PaddedBatch(
        padded([r.input_ids for r in rows], pad_id),
        padded([np.ones(len(r.input_ids), dtype=np.int64) for r in rows], 0),
        padded([r.labels for r in rows], IGNORE_INDEX),
    )


def filler_pack(token_id: int) -> Pack:
    """A one-token pack with no target: what a rank runs when its share of a step has fewer packs than another's,
    because every rank must take part in each forward and backward (ZeRO-3 and FSDP gather weights collectively)."""
    return Pack(np.array([token_id]), np.array([0]), np.array([IGNORE_INDEX]), [])


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total length ≤ `capacity`: longest first, each into the first bin
    with room. Ties keep index order, so the result depends only on the input."""
    bins: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        if length > capacity:
            raise ValueError(f"sample {index} has {length} tokens, more than the capacity {capacity}")
        for b, free in enumerate(room):
            if length <= free:
                bins[b].append(index)
                room[b] -= length
                break
        else:
            bins.append([index])
            room.append(capacity - length)
    return bins


@dataclass
class PackingStats:
    """Real tokens against the slots of the packs (`max_seq_len` each): how full the packs are."""

    real_tokens: int = 0
    slots: int = 0

    def add(self, real_tokens: int, packs: int, max_seq_len: int) -> None:
        self.real_tokens += real_tokens
        self.slots += packs * max_seq_len

    @property
    def efficiency(self) -> float:
        return self.real_tokens / self.slots if self.slots else 0.0
