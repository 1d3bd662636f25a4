"""Training FLOPs of a packed step, and model FLOPs utilization (MFU).

Per token, each weight that takes part in a matmul costs 2 FLOPs forward and 4 backward: 6·N per token, with N the
matmul parameters (all but the input embedding table, a lookup; with tied embeddings that matrix is the output
projection and counts once).

Attention adds the two matmuls that have no weights. For one document of L tokens, in each layer, QKᵀ is L·L dot
products of width d = n_heads·head_dim (2·L²·d FLOPs) and the weighted sum of values the same again: 4·L²·d
forward, 12·L²·d for training. Packed documents do not attend to each other, so a pack costs Σ_doc L² and not
(Σ_doc L)²:

    step FLOPs = 6·N·Σ_doc L  +  12·n_layers·d·Σ_doc L²

The full L×L square is counted, as in PaLM's MFU (appendix B) and Megatron; a causal kernel executes about half of
the attention term. MFU = step FLOPs / (step seconds · workers · peak FLOP/s of one worker).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), by a substring of the device name.
GPU_PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


@dataclass(frozen=True)
class FlopsModel:
    matmul_params: int
    n_layers: int
    attention_width: int  # n_heads · head_dim of the queries

    @classmethod
    def from_hf_config(cls, config: Any, total_params: int, input_embedding_params: int) -> "FlopsModel":
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        tied = bool(getattr(config, "tie_word_embeddings", False))
        return cls(total_params if tied else total_params - input_embedding_params, config.num_hidden_layers,
                   heads * head_dim)

    def training_flops(self, doc_lengths: Iterable[int]) -> float:
        lengths = [int(n) for n in doc_lengths]
        return 6.0 * self.matmul_params * sum(lengths) + 12.0 * self.n_layers * self.attention_width * sum(
            n * n for n in lengths)


def mfu(flops: float, seconds: float, workers: int, peak_flops_per_worker: float) -> float:
    return flops / (seconds * workers * peak_flops_per_worker) if seconds > 0 else 0.0


def gpu_peak_flops(device_name: str) -> float | None:
    return next((peak for name, peak in GPU_PEAK_BF16_FLOPS.items() if name in device_name), None)
