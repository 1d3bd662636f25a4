"""Ray Data actor for the embedding signal of decontamination: owns one embedding model (on a GPU when it has one)
and the benchmark's vectors, and marks open rows whose nearest benchmark item is similar enough."""

from __future__ import annotations

import pyarrow as pa

from pipeline.config import EmbeddingConfig
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.embeddings import Embedder
from pipeline.preprocess.steps import mark_embedding_matches


class EmbeddingStage:
    def __init__(self, items: list[BenchmarkItem], config: EmbeddingConfig):
        self._embed = Embedder(config.model, config.batch_size, "cuda" if config.num_gpus > 0 else "cpu")
        self._items, self._threshold = items, config.threshold
        # Benchmarks are small (thousands of items): every replica embeds them once rather than shipping vectors.
        self._item_vectors = self._embed([item.text for item in items])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return mark_embedding_matches(batch, self._embed, self._items, self._item_vectors, self._threshold)
