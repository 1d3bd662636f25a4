"""The SFT loss: the mean over every assistant token of an optimizer step, however the step is cut up.

A step's tokens are spread over data-parallel ranks and, on each rank, over micro-batches (packs). Averaging each
micro-batch's loss and then averaging those would weight a token by how full its pack was. Instead each micro-batch
contributes the *sum* of its token losses divided by the step's total number of target tokens, counted across ranks
(one all-reduce of an integer before the first backward). Summed over micro-batches and ranks, that is exactly the
token mean of the step, so k micro-batches give the same update as one, and packed samples the same as unpacked.

The loss never materializes a pack's logits. At 32k tokens and Qwen2.5's 152k-word vocabulary they would be 10 GB
in bf16, 20 GB more upcast to fp32 for the softmax, and as much again for their gradient. `LossHead` makes the
model's output layer compute the loss itself: only labelled positions meet the vocabulary, a chunk of them at a
time, and each chunk's logits are recomputed in backward rather than kept. It stays inside the output layer's own
forward, so ZeRO-3 gathers its weight and FSDP unshards it exactly as for the plain layer. Torch is imported where
it is used.
"""

from __future__ import annotations

from typing import Any

from pipeline.packing import IGNORE_INDEX


def token_loss_sum(hidden: Any, weight: Any, labels: Any, chunk_tokens: int) -> Any:
    """Sum of cross-entropies, in fp32, of the positions whose label is not IGNORE_INDEX, with logits
    `hidden @ weight.T` computed `chunk_tokens` positions at a time. Labels are already shifted (label t is the token
    after t, see `pipeline.packing.build_pack`), so nothing is shifted here."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    targets = (labels != IGNORE_INDEX).nonzero().squeeze(1)
    hidden, labels = hidden[targets], labels[targets]
    # An empty product starts the sum: a pack without targets (a rank's filler) still reaches the weight and the
    # hidden states with zero gradients, so every rank takes part in the same collectives in backward.
    total = F.linear(hidden[:0], weight).float().sum()
    for start in range(0, len(labels), chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(_cross_entropy_sum, hidden[start:end], weight, labels[start:end],
                                   use_reentrant=False)
    return total


def _cross_entropy_sum(hidden: Any, weight: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(F.linear(hidden, weight).float(), labels, reduction="sum")


class LossHead:
    """Turns a causal LM's output layer into its loss: `loss_sum(forward, labels, **inputs)` runs the model (or the
    DeepSpeed engine wrapping it) and gets back the token loss sum of the labelled positions where logits would be.
    Without labels the layer computes logits as before."""

    def __init__(self, model: Any, chunk_tokens: int):
        self.layer = model.get_output_embeddings()
        if self.layer.bias is not None or getattr(model.config, "final_logit_softcapping", None):
            raise ValueError("the loss head computes plain logits: an output layer without bias or softcapping")
        self.chunk_tokens = chunk_tokens
        self._labels = None
        # An instance attribute: module hooks (ZeRO-3's gathering, FSDP's unsharding) still run around it.
        self.layer.forward = self._forward

    def loss_sum(self, forward: Any, labels: Any, **inputs: Any) -> Any:
        self._labels = labels
        try:
            return forward(**inputs, use_cache=False).logits
        finally:
            self._labels = None

    def _forward(self, hidden: Any) -> Any:
        import torch.nn.functional as F

        if self._labels is None:
            return F.linear(hidden, self.layer.weight)
        return token_loss_sum(hidden, self.layer.weight, self._labels, self.chunk_tokens)


def backward_scale(step_target_tokens: int, world_size: int) -> float:
    """Factor for a micro-batch's loss sum before backward. DeepSpeed and FSDP average gradients over data-parallel
    ranks (they divide the summed gradients by the world size); multiplying by it undoes that, leaving
    d(sum of all token losses)/d(weights) divided by the step's target tokens."""
    if step_target_tokens <= 0:
        raise ValueError("an optimizer step needs at least one target token")
    return world_size / step_target_tokens
