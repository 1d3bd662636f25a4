"""Ray Data actor for the embedding signal of decontamination: owns one embedding model (on a GPU when configured)
and the benchmark's vectors, and marks open rows that `decontaminate.EmbeddingMatcher` matches to a benchmark item;
the reject's detail names the item and the signals (cosine, numbers) that flagged it."""

from __future__ import annotations

import pyarrow as pa

from pipeline.config import EmbeddingConfig
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.decontaminate import EmbeddingMatcher, EmbeddingRule
from pipeline.preprocess.embeddings import Embedder
from pipeline.preprocess.steps import Verdict, open_rows, with_verdicts


class EmbeddingStage:
    def __init__(self, items: list[BenchmarkItem], config: EmbeddingConfig):
        # onnxruntime would otherwise start a thread per core of the node, whatever the replica was given.
        threads = max(1, int(config.num_cpus)) if config.device == "cpu" else None
        self._embed = Embedder(config.model, config.batch_size, config.device, config.backend, threads)
        # Benchmarks are small (thousands of items): every replica embeds them once rather than shipping vectors.
        rule = EmbeddingRule(config.threshold, config.gray_threshold, config.gray_min_numbers, config.candidates)
        self._matcher = EmbeddingMatcher(items, self._embed([item.text for item in items]), rule)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = open_rows(batch)
        texts = batch.column("text").to_pylist()
        texts = [texts[i] for i in rows]
        matches = self._matcher.matches(texts, self._embed(texts)) if rows else []
        return with_verdicts(batch, {
            i: Verdict(match.reason, match.signals, match.item.id, match.item.source, match.similarity)
            for i, match in zip(rows, matches) if match is not None
        })
