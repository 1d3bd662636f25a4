"""Exact and near deduplication of queries, as pure steps that a distributed runner composes.

Every row carries a `rank`: a string that sorts rows by input order and is unique, so "the first occurrence" is well
defined however rows are partitioned. Exact duplicates share a match key; the runner hash-partitions rows by key, so
`exact_duplicates` only ever sees one partition. Near duplicates come from MinHash (rensa) over word shingles and LSH
banding: rows sharing a band's values land in one bucket (again hash-partitioned), buckets yield candidate pairs,
and `near_duplicates` keeps the pairs whose estimated Jaccard similarity reaches the threshold and joins them with
union-find, so every connected group keeps one representative. Must never import Ray.
"""

from __future__ import annotations

import array
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain, combinations

import numpy as np

from pipeline.preprocess.normalize import near_form

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
    """MinHash signatures (rensa) of the character n-grams of texts' near forms, and their LSH band keys.

    The n-grams are hashed in numpy for a whole batch at once and handed to rensa as one flat buffer: one call into
    Rust per batch, not one Python object per shingle. Each signature is then XORed with a hash of the numbers its
    text states, so texts that state other numbers share (up to chance, 2**-32 per value) no signature value: they
    never meet in an LSH bucket, and a pair that did would not verify. Equal numbers leave the similarity as it was.
    """

    def __init__(self, num_perm: int, shingle_size: int, threshold: float, seed: int):
        from rensa import RMinHash

        self._digests = RMinHash.digest_matrix_from_flat_token_hashes
        self.num_perm, self.shingle_size, self.seed = num_perm, shingle_size, seed
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        salts = np.random.default_rng(seed).integers(1, 2**63, size=(self.bands, self.rows + 1), dtype=np.uint64)
        self._multipliers = salts[:, :-1] | np.uint64(1)  # odd, so no input bit is lost
        self._offsets = salts[:, -1]  # keeps equal values in different bands apart

    def signatures(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (rows, num_perm) uint32, indices of `texts` they belong to). Normalized texts in; a text
        without words has no signature (all such would be equal)."""
        return self.form_signatures([near_form(text) for text in texts])

    def form_signatures(self, forms: Sequence[tuple[str, tuple[str, ...]]]) -> tuple[np.ndarray, np.ndarray]:
        """`signatures` from near forms (`normalize.near_form`)."""
        present = [i for i, (form, _) in enumerate(forms) if form]
        if not present:
            return np.empty((0, self.num_perm), dtype=np.uint32), np.array(present, dtype=np.int64)
        hashes, offsets = shingle_hashes([forms[i][0].encode() for i in present], self.shingle_size)
        matrix = self._digests(hashes, offsets, self.num_perm, self.seed)
        values = array.array("I", chain.from_iterable(matrix.to_rows()))  # the one way out of rensa's matrix
        signatures = np.frombuffer(values, dtype=np.uint32).reshape(len(present), self.num_perm)
        salts = np.array([numbers_salt(forms[i][1]) for i in present], dtype=np.uint32)
        return signatures ^ salts[:, None], np.array(present, dtype=np.int64)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(rows, bands) uint64: equal keys in a column mean equal signature values in that band (up to collisions,
        which only add candidates that verification then drops)."""
        used = signatures[:, : self.bands * self.rows].astype(np.uint64).reshape(-1, self.bands, self.rows)
        with np.errstate(over="ignore"):  # multiply-add hashing wraps around 2**64 on purpose
            return (used * self._multipliers).sum(axis=2, dtype=np.uint64) + self._offsets


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd; with the shift below it spreads the window's bytes over all bits


def shingle_hashes(encoded: Sequence[bytes], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u64 hashes of every `size`-byte window of every text, concatenated; row offsets into them, len + 1). A text
    shorter than one window is one shingle, itself (padded with NUL bytes, which no text holds). A window of up to
    8 bytes is read as one little-endian integer, so hashing is a few vector operations for the whole batch."""
    if not 1 <= size <= 8:
        raise ValueError(f"shingle_size must be 1 to 8 characters, not {size}")
    padded = [text.ljust(size, b"\0") for text in encoded]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    data = b"".join(padded) + b"\0" * 8
    words_ = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # 8 bytes from every offset
    per_text = lengths - size + 1  # windows that end inside their text
    offsets = np.concatenate(([0], np.cumsum(per_text)))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    windows = words_[np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], per_text)]
    if size < 8:
        windows &= np.uint64((1 << (8 * size)) - 1)
    with np.errstate(over="ignore"):
        windows *= _MIX
    windows ^= windows >> np.uint64(29)
    return windows, offsets.astype(np.uint64)


def numbers_salt(numbers: tuple[str, ...]) -> int:
    """32 bits that differ, but for chance, between texts that state different numbers."""
    return zlib.crc32(" ".join(numbers).encode())


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


def near_duplicates_in_memory(
    signatures: np.ndarray, ranks: Sequence[str], hasher: MinHasher, threshold: float
) -> dict[str, tuple[str, float]]:
    """`near_duplicates` of rows that fit in one process (benchmarks, tests): the job's steps, without the shuffles."""
    keys = hasher.band_keys(signatures)
    pairs = {pair for band in range(hasher.bands) for pair in bucket_pairs(keys[:, band].tolist(), ranks)}
    return near_duplicates(sorted(pairs), dict(zip(ranks, signatures)), threshold)
