"""Exact and near deduplication of queries, as pure steps that a distributed runner composes.

Every row carries a `rank`: a string that sorts rows by input order and is unique, so "the first occurrence" is well
defined however rows are partitioned. Exact duplicates share a match key; the runner hash-partitions rows by key, so
`exact_duplicates` only ever sees one partition. Near duplicates come from MinHash (rensa) over word shingles and LSH
banding: rows sharing a band's values land in one bucket (again hash-partitioned), buckets yield candidate pairs,
and `near_duplicates` keeps the pairs whose estimated Jaccard similarity reaches the threshold and joins them with
union-find, so every connected group keeps one representative. Must never import Ray.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import combinations

import numpy as np

# A bucket larger than this yields a star (every member with the first) instead of all pairs, so that one popular
# band value cannot make the candidate list quadratic.
MAX_BUCKET_PAIRS_SIZE = 16


def rank(file_index: int, line: int, query_id: str, unique: str) -> str:
    """Sorts by input file, then line (0 for Parquet rows, which have none), then id; `unique` breaks exact ties."""
    return f"{file_index:06d}:{line:012d}:{query_id}:{unique}"


def exact_duplicates(keys: Sequence[str], ranks: Sequence[str]) -> dict[int, int]:
    """Row index → index of its representative, the lowest-ranked row with the same key (which is not a key)."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        j = first.get(key)
        if j is None or ranks[i] < ranks[j]:
            first[key] = i
    return {i: first[key] for i, key in enumerate(keys) if first[key] != i}


class MinHasher:
    """MinHash signatures of word shingles (rensa), and their LSH band keys."""

    def __init__(self, num_perm: int, shingle_size: int, threshold: float, seed: int):
        from rensa import RMinHash

        self._digests = RMinHash.digest_matrix_from_token_sets
        self.num_perm, self.shingle_size, self.seed = num_perm, shingle_size, seed
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        salts = np.random.default_rng(seed).integers(1, 2**63, size=(self.bands, self.rows + 1), dtype=np.uint64)
        self._multipliers = salts[:, :-1] | np.uint64(1)  # odd, so no input bit is lost
        self._offsets = salts[:, -1]  # keeps equal values in different bands apart

    def shingles(self, tokens: Sequence[str]) -> list[str]:
        """Word n-grams; a text shorter than one shingle is a single shingle of all its words."""
        if len(tokens) <= self.shingle_size:
            return [" ".join(tokens)] if tokens else []
        return [" ".join(gram) for gram in zip(*(tokens[i:] for i in range(self.shingle_size)))]

    def signatures(self, shingle_sets: list[list[str]]) -> np.ndarray:
        """(rows, num_perm) uint32; callers leave out texts without shingles, whose signatures would all be equal."""
        matrix = self._digests(shingle_sets, self.num_perm, self.seed)
        return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(shingle_sets), self.num_perm)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(rows, bands) uint64: equal keys in a column mean equal signature values in that band (up to collisions,
        which only add candidates that verification then drops)."""
        used = signatures[:, : self.bands * self.rows].astype(np.uint64).reshape(-1, self.bands, self.rows)
        with np.errstate(over="ignore"):  # multiply-add hashing wraps around 2**64 on purpose
            return (used * self._multipliers).sum(axis=2, dtype=np.uint64) + self._offsets


@cache
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that minimize the equally weighted probability mass of false positives (similarity
    below the threshold, yet a shared bucket) and false negatives, as datasketch chooses them."""
    similarity = np.linspace(0.0, 1.0, 501)
    below = similarity < threshold
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            candidate = 1.0 - (1.0 - similarity**rows) ** bands
            error = np.trapezoid(candidate[below], similarity[below]) + np.trapezoid(
                1.0 - candidate[~below], similarity[~below]
            )
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def bucket_pairs(keys: Sequence[int], ranks: Sequence[str]) -> list[tuple[str, str]]:
    """Candidate pairs of ranks from rows that share a band key."""
    buckets: dict[int, list[str]] = defaultdict(list)
    for key, row in zip(keys, ranks):
        buckets[key].append(row)
    pairs: list[tuple[str, str]] = []
    for members in buckets.values():
        if len(members) < 2:
            continue
        members.sort()
        if len(members) <= MAX_BUCKET_PAIRS_SIZE:
            pairs.extend(combinations(members, 2))
        else:
            pairs.extend((members[0], other) for other in members[1:])
    return pairs


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of two shingle sets."""
    return float(np.mean(a == b))


def near_duplicates(
    pairs: Iterable[tuple[str, str]], signatures: dict[str, np.ndarray], threshold: float
) -> dict[str, tuple[str, float]]:
    """Rank → (rank of its group's representative, estimated Jaccard similarity to it) for every row that is a near
    duplicate. A group is a connected set of verified pairs; its representative is its lowest rank."""
    parent: dict[str, str] = {}

    def root(row: str) -> str:
        parent.setdefault(row, row)
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in pairs:
        if jaccard(signatures[a], signatures[b]) >= threshold:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the lower rank stays the root: it is the representative
    return {
        row: (rep, round(jaccard(signatures[row], signatures[rep]), 4))
        for row in list(parent)
        if (rep := root(row)) != row
    }
