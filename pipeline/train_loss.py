"""The SFT loss: the mean over every assistant token of an optimizer step, however the step is cut up.

A step's tokens are spread over data-parallel ranks and, on each rank, over micro-batches (packs). Averaging each
micro-batch's loss and then averaging those would weight a token by how full its pack was. Instead each micro-batch
contributes the *sum* of its token losses divided by the step's total number of target tokens, counted across ranks
(one all-reduce of an integer before the first backward). Summed over micro-batches and ranks, that is exactly the
token mean of the step, so k micro-batches give the same update as one, and packed samples the same as unpacked.
Torch is imported where it is used.
"""

from __future__ import annotations

from typing import Any

from pipeline.packing import IGNORE_INDEX


def token_loss_sum(logits: Any, labels: Any) -> Any:
    """Sum of cross-entropies over the positions whose label is not IGNORE_INDEX, in fp32. Labels are already
    shifted (label t is the token after t, see `pipeline.packing.build_pack`), so nothing is shifted here."""
    import torch.nn.functional as F

    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def backward_scale(step_target_tokens: int, world_size: int) -> float:
    """Factor for a micro-batch's loss sum before backward. DeepSpeed and FSDP average gradients over data-parallel
    ranks (they divide the summed gradients by the world size); multiplying by it undoes that, leaving
    d(sum of all token losses)/d(weights) divided by the step's target tokens."""
    if step_target_tokens <= 0:
        raise ValueError("an optimizer step needs at least one target token")
    return world_size / step_target_tokens
