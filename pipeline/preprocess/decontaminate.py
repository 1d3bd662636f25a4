"""Decontamination: does a query contain an evaluation problem, verbatim, nearly verbatim or reworded?

Three signals, cheapest first; the first that matches names the reason:
  1. `contaminated_exact`: the match keys are equal (case, whitespace and LaTeX spacing ignored);
  2. `contaminated_ngram`: the query holds at least `ngram_threshold` of a benchmark item's word n-grams (open-r1
     uses 8-grams; any single shared 8-gram, as there, flags template problems with other numbers and digit runs);
  3. `contaminated_embedding`: cosine similarity of normalized sentence embeddings, by exact search over every
     benchmark item, combined with the numbers the item states (below).

A rewording keeps the numbers of a problem; a template twin (the same story with other numbers) changes them and is
another problem. So both n-gram and embedding matches need every number the item states ("five" is 5, "1,000" is
1000, see `normalize.near_form`) to appear in the query. An item that states at least `gray_min_numbers` distinct
numbers, all of them in the query, matches from the lower `gray_threshold` of cosine up; any other item (no numbers,
or one or two, which a different problem shares by chance) needs the full `threshold`. A query whose nearest item is
a twin of the item it rewords is still caught: the `candidates` nearest items are tried in order. Every match
carries `signals`, a sentence saying which signals flagged it, with their values and thresholds.

The embedding model is passed in as vectors, so this module stays pure. Must never import Ray.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.normalize import match_key, near_form, words

# Texts to unit-length vectors, one row per text (float32).
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Contamination:
    reason: str  # contaminated_exact | contaminated_ngram | contaminated_embedding
    item: BenchmarkItem
    similarity: float
    signals: str = ""  # which signals flagged the query, with their values and thresholds, for the reject's detail


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


# `\frac12` is `\frac{1}{2}`, not 12.
_DIGIT_FRACTION = re.compile(r"\\[dt]?frac\s*(\d)(\d)")


def numbers_of(text: str) -> Counter[str]:
    """The multiset of numbers a text states, each in one spelling (digits; see `normalize.near_form`)."""
    return Counter(near_form(_DIGIT_FRACTION.sub(r"\\frac{\1}{\2}", text))[1])


def numbers_signal(item_numbers: Counter[str], query_numbers: Counter[str]) -> str | None:
    """"all 3 numbers of the item in the query (2, 4, 16)" when the query states every number of the item, "the item
    states no number" when it has none; None when a number of the item is missing from the query (a template twin).
    A rewording may mention a number fewer times ("5 apple pies ... the five pies" as "five pies") and may drop a 1
    ("one" is as often an article or a pronoun: "one glass costs $5" as "a glass costs $5"), but not while it states
    any number more often than the item: that is an occurrence changed ("x^2 + y^2" into "x^2 + y^3", "2, 2, 3"
    into "2, 3, 3")."""
    if not item_numbers:
        return "the item states no number"
    if set(item_numbers) - {"1"} - set(query_numbers):
        return None
    if item_numbers - query_numbers and query_numbers - item_numbers:
        return None
    shown = sorted(item_numbers, key=lambda n: (len(n), n))
    listed = ", ".join(shown[:8]) + (", …" if len(shown) > 8 else "")
    if len(shown) == 1:
        return f"the item's one number in the query ({listed})"
    return f"all {len(shown)} numbers of the item in the query ({listed})"


def stated_numbers(numbers: Counter[str]) -> int:
    """How many distinct numbers identify a problem: 1 left out (see `numbers_signal`)."""
    return len(set(numbers) - {"1"})


def _named(item: BenchmarkItem, signals: str) -> str:
    return f"{item.source} item {item.id}: {signals}"


class BenchmarkIndex:
    """Exact and n-gram lookups over every benchmark item; built once per worker (benchmarks are small)."""

    def __init__(self, items: list[BenchmarkItem], ngram_size: int, ngram_threshold: float):
        self.items = items
        self._ngram_size, self._ngram_threshold = ngram_size, ngram_threshold
        self._by_key: dict[str, int] = {}
        self._by_ngram: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._ngram_counts: list[int] = []
        self.numbers = [numbers_of(item.text) for item in items]
        for index, item in enumerate(items):
            key = match_key(item.text)
            self._by_key.setdefault(key, index)
            grams = ngrams(words(key), ngram_size)
            self._ngram_counts.append(len(grams))
            for gram in grams:
                self._by_ngram[gram].append(index)

    def exact(self, key: str) -> Contamination | None:
        index = self._by_key.get(key)
        if index is None:
            return None
        return Contamination("contaminated_exact", self.items[index], 1.0,
                             _named(self.items[index], "same normalized text"))

    def ngram(self, key: str) -> Contamination | None:
        """The item with the largest share of its n-grams inside the query, among those whose numbers the query
        states, when that share reaches the threshold. (Numbers are read from the match key, which is all the
        stream's first steps pass here; it differs from the text only in spacing at symbols.)"""
        shared: Counter[int] = Counter()
        for gram in ngrams(words(key), self._ngram_size):
            shared.update(self._by_ngram.get(gram, ()))
        if not shared:
            return None
        # Most queries share some n-gram with some item, few reach the threshold: only those are sorted, and only
        # then are the query's numbers read. Ties go to the earlier item, so attribution does not depend on hash order.
        candidates = [(count / self._ngram_counts[index], index) for index, count in shared.items()
                      if count >= self._ngram_threshold * self._ngram_counts[index]]
        query_numbers = numbers_of(key) if candidates else Counter()
        for containment, index in sorted(candidates, key=lambda c: (-c[0], c[1])):
            numbers = numbers_signal(self.numbers[index], query_numbers)
            if numbers is not None:
                signals = f"{containment:.0%} of the item's word {self._ngram_size}-grams in the query " \
                          f"(≥ {self._ngram_threshold:.0%}); {numbers}"
                return Contamination("contaminated_ngram", self.items[index], round(containment, 4),
                                     _named(self.items[index], signals))
        return None


def nearest_items(vectors: np.ndarray, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest neighbour by cosine similarity (rows are unit vectors): index and similarity per query row."""
    similarity = vectors @ item_vectors.T
    nearest = similarity.argmax(axis=1)
    return nearest, similarity[np.arange(len(vectors)), nearest]


def top_items(vectors: np.ndarray, item_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest items by cosine similarity, nearest first: indices and similarities, one row per query."""
    similarity = vectors @ item_vectors.T
    k = min(k, similarity.shape[1])
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return top, np.take_along_axis(similarity, top, axis=1)


@dataclass(frozen=True)
class EmbeddingRule:
    """When a query is a benchmark item by embedding: cosine ≥ `threshold`, or ≥ `gray_threshold` when the query
    states every number of an item that states at least `gray_min_numbers` (one or two shared numbers happen by
    chance: "3 miles" and "5 miles"); never when a number of the item is missing."""

    threshold: float
    gray_threshold: float
    gray_min_numbers: int = 3
    candidates: int = 5

    def match(self, query_numbers: Counter[str], nearest: Sequence[int], similarity: Sequence[float],
              items: list[BenchmarkItem], item_numbers: list[Counter[str]]) -> Contamination | None:
        for index, score in zip(nearest, similarity):
            score = float(score)
            if score < self.gray_threshold:
                return None  # nearest first: no later candidate is closer
            numbers = numbers_signal(item_numbers[index], query_numbers)
            if numbers is None:
                continue  # a template twin; a farther item may still be the one reworded
            gray = stated_numbers(item_numbers[index]) >= self.gray_min_numbers
            needed = self.gray_threshold if gray else self.threshold
            if score >= needed:
                zone = "" if score >= self.threshold else f" (gray zone, < {self.threshold})"
                signals = f"cosine {score:.3f} ≥ {needed}{zone}; {numbers}"
                return Contamination("contaminated_embedding", items[index], round(score, 4),
                                     _named(items[index], signals))
        return None


class EmbeddingMatcher:
    """The embedding signal over one benchmark: its items, their numbers and vectors, and the rule."""

    def __init__(self, items: list[BenchmarkItem], item_vectors: np.ndarray, rule: EmbeddingRule):
        self.items, self.item_vectors, self.rule = items, item_vectors, rule
        self.item_numbers = [numbers_of(item.text) for item in items]

    def matches(self, texts: list[str], vectors: np.ndarray) -> list[Contamination | None]:
        """One verdict per query: `texts` normalized, `vectors` their embeddings."""
        if not self.items or not texts:
            return [None] * len(texts)
        nearest, similarity = top_items(vectors, self.item_vectors, self.rule.candidates)
        return [
            self.rule.match(numbers_of(text), near, sims, self.items, self.item_numbers)
            for text, near, sims in zip(texts, nearest, similarity)
        ]
