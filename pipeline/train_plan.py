"""The plan of a training run: which samples each optimizer step consumes, how they are packed and split over ranks
and micro-batches, and at which learning rate.

Every rank computes the same plan from the sample lengths alone, and step k depends only on (seed, k): a checkpoint
needs nothing but the step number to resume with the same data in the same order.
This module must never import Ray or torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.packing import first_fit_decreasing


@dataclass(frozen=True)
class Source:
    """One teacher's dataset: the indices of its trainable samples, and how often each is seen per epoch."""

    name: str
    indices: np.ndarray
    weight: float  # 2.0: every sample twice; 0.5: a seeded half, drawn again each epoch


def trainable(
    name: str, indices: np.ndarray, lengths: np.ndarray, target_tokens: np.ndarray, max_seq_len: int, weight: float
) -> tuple[Source, dict[str, int]]:
    """Keep the samples that fit in a pack and have something to learn; count the others by reason. A sample without
    tokens is one whose messages could not be tokenized (see `TOKENIZED_SCHEMA.error`)."""
    untokenizable = lengths[indices] == 0
    too_long = lengths[indices] > max_seq_len
    nothing_to_learn = ~untokenizable & ~too_long & (target_tokens[indices] == 0)
    kept = indices[~untokenizable & ~too_long & ~nothing_to_learn]
    return Source(name, kept, weight), {
        "over_max_seq_len": int(too_long.sum()), "no_assistant_tokens": int(nothing_to_learn.sum()),
        "untokenizable": int(untokenizable.sum()),
    }


def epoch_order(sources: Sequence[Source], seed: int, epoch: int) -> np.ndarray:
    """Sample indices of one epoch, mixed by weight and shuffled; the same (seed, epoch) gives the same order."""
    rng = np.random.default_rng([seed, epoch])
    chosen = []
    for source in sources:
        whole, fraction = divmod(source.weight, 1.0)
        chosen += [source.indices] * int(whole)
        extra = round(fraction * len(source.indices))
        if extra:
            chosen.append(rng.choice(source.indices, size=extra, replace=False))
    return rng.permutation(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def split_over_ranks(packs: list[list[int]], lengths: np.ndarray, world_size: int) -> list[list[list[int]]]:
    """Packs per rank, as micro-batches of one pack each. Every rank gets the same number of micro-batches (a rank
    short of packs gets empty ones, run as fillers); the heaviest packs go first to the least-loaded rank."""
    per_rank = -(-len(packs) // world_size)
    ranks: list[list[list[int]]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for pack in sorted(packs, key=lambda p: -int(lengths[p].sum())):
        rank = min((r for r in range(world_size) if len(ranks[r]) < per_rank), key=lambda r: (load[r], r))
        ranks[rank].append(pack)
        load[rank] += int(lengths[pack].sum())
    for micro_batches in ranks:
        micro_batches += [[] for _ in range(per_rank - len(micro_batches))]
    return ranks


class TrainPlan:
    """`global_batch_samples` samples per optimizer step, as in the paper; an epoch's last partial step is dropped."""

    def __init__(
        self, lengths: np.ndarray, sources: Sequence[Source], global_batch_samples: int, max_seq_len: int,
        world_size: int, epochs: int, seed: int,
    ):
        self.lengths, self.sources = lengths, list(sources)
        self.global_batch_samples, self.max_seq_len = global_batch_samples, max_seq_len
        self.world_size, self.epochs, self.seed = world_size, epochs, seed
        self.samples_per_epoch = len(epoch_order(self.sources, seed, 0))
        self.steps_per_epoch = self.samples_per_epoch // global_batch_samples
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"an epoch has {self.samples_per_epoch} samples, fewer than global_batch_samples={global_batch_samples}"
            )
        self.total_steps = self.steps_per_epoch * epochs
        self._order: tuple[int, np.ndarray] | None = None

    def step_samples(self, step: int) -> np.ndarray:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.sources, self.seed, epoch))
        start = position * self.global_batch_samples
        return self._order[1][start : start + self.global_batch_samples]

    def step(self, step: int) -> list[list[list[int]]]:
        """For each rank, its micro-batches (sample indices, one pack each) of optimizer step `step` (0-based)."""
        samples = self.step_samples(step)
        packs = [[int(samples[i]) for i in b] for b in first_fit_decreasing(self.lengths[samples], self.max_seq_len)]
        return split_over_ranks(packs, self.lengths, self.world_size)


def warmup_cosine_lr(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup to `peak_lr`, then a cosine down to
    `min_lr_ratio * peak_lr` at the last step. A pure function of the step, so a checkpoint needs no scheduler state."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
