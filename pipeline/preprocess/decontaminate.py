"""Decontamination: does a query contain an evaluation problem, verbatim, nearly verbatim or reworded?

Three signals, cheapest first; the first that matches names the reason:
  1. `contaminated_exact`: the match keys are equal (case, whitespace and LaTeX spacing ignored);
  2. `contaminated_ngram`: the query holds at least `ngram_threshold` of a benchmark item's word n-grams (open-r1
     uses 8-grams; any single shared 8-gram, as there, flags template problems with other numbers and digit runs);
  3. `contaminated_embedding`: cosine similarity of normalized sentence embeddings at or above the threshold, by exact
     nearest-neighbour search over every benchmark item.
The embedding model is passed in as a function (`Embed`), so this module stays pure. Must never import Ray.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.normalize import match_key, words

# Texts to unit-length vectors, one row per text (float32).
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Contamination:
    reason: str  # contaminated_exact | contaminated_ngram | contaminated_embedding
    item: BenchmarkItem
    similarity: float


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class BenchmarkIndex:
    """Exact and n-gram lookups over every benchmark item; built once per worker (benchmarks are small)."""

    def __init__(self, items: list[BenchmarkItem], ngram_size: int, ngram_threshold: float):
        self.items = items
        self._ngram_size, self._ngram_threshold = ngram_size, ngram_threshold
        self._by_key: dict[str, int] = {}
        self._by_ngram: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._ngram_counts: list[int] = []
        for index, item in enumerate(items):
            key = match_key(item.text)
            self._by_key.setdefault(key, index)
            grams = ngrams(words(key), ngram_size)
            self._ngram_counts.append(len(grams))
            for gram in grams:
                self._by_ngram[gram].append(index)

    def exact(self, key: str) -> Contamination | None:
        index = self._by_key.get(key)
        return None if index is None else Contamination("contaminated_exact", self.items[index], 1.0)

    def ngram(self, key: str) -> Contamination | None:
        """The item with the largest share of its n-grams inside the query, when that share reaches the threshold."""
        shared: Counter[int] = Counter()
        for gram in ngrams(words(key), self._ngram_size):
            shared.update(self._by_ngram.get(gram, ()))
        if not shared:
            return None
        # Ties go to the earlier item, so attribution does not depend on hash order.
        index, count = max(shared.items(), key=lambda kv: (kv[1] / self._ngram_counts[kv[0]], -kv[0]))
        containment = count / self._ngram_counts[index]
        if containment < self._ngram_threshold:
            return None
        return Contamination("contaminated_ngram", self.items[index], round(containment, 4))


def nearest_items(vectors: np.ndarray, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest neighbour by cosine similarity (rows are unit vectors): index and similarity per query row."""
    similarity = vectors @ item_vectors.T
    nearest = similarity.argmax(axis=1)
    return nearest, similarity[np.arange(len(vectors)), nearest]
