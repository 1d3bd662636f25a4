"""Deduplication: the first occurrence in input order represents a group; near duplicates are grouped transitively,
only through pairs whose estimated Jaccard similarity reaches the threshold."""

import numpy as np
import pytest

from pipeline.preprocess.dedup import (
    MAX_BUCKET_PAIRS_SIZE,
    MinHasher,
    bucket_pairs,
    exact_duplicates,
    jaccard,
    lsh_bands,
    near_duplicates,
    rank,
)
from pipeline.preprocess.normalize import match_key, normalize, words

BASE = "Tom has 3 red apples and buys 2 more green apples at the market on Sunday. How many apples does he have now?"
NEAR = "Tom has 3 red apples and buys 2 more green apples at the market on Monday. How many apples does he have now?"
OTHER = "A train leaves the station at noon travelling at 60 miles per hour. When does it reach a city 180 miles away?"


def test_rank_orders_by_file_then_line_then_id():
    ranks = [rank(1, 2, "a", "u"), rank(0, 10, "z", "u"), rank(0, 9, "z", "u"), rank(0, 0, "b", "u"),
             rank(0, 0, "a", "v")]
    assert sorted(ranks) == [ranks[4], ranks[3], ranks[2], ranks[1], ranks[0]]


def test_exact_duplicates_point_at_the_lowest_rank():
    keys = ["x", "y", "x", "x", "z"]
    ranks = ["3", "1", "2", "9", "0"]
    assert exact_duplicates(keys, ranks) == {0: 2, 3: 2}


@pytest.mark.parametrize("threshold, num_perm", [(0.5, 128), (0.8, 128), (0.9, 256)])
def test_lsh_bands_fit_the_signature(threshold, num_perm):
    bands, rows = lsh_bands(threshold, num_perm)
    assert bands * rows <= num_perm
    # The S-curve's steepest point sits near the threshold.
    assert abs((1 / bands) ** (1 / rows) - threshold) < 0.1


def signatures(hasher, *texts):
    return hasher.signatures([hasher.shingles(words(match_key(normalize(t)))) for t in texts])


def test_similar_texts_share_a_band_and_different_ones_do_not():
    hasher = MinHasher(num_perm=128, shingle_size=3, threshold=0.5, seed=1)
    sig = signatures(hasher, BASE, NEAR, OTHER)
    assert jaccard(sig[0], sig[1]) > 0.5 > jaccard(sig[0], sig[2])
    keys = hasher.band_keys(sig)
    assert keys.shape == (3, hasher.bands)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()


def test_short_texts_are_one_shingle_and_empty_ones_none():
    hasher = MinHasher(num_perm=64, shingle_size=5, threshold=0.8, seed=1)
    assert hasher.shingles(["what", "is", "two"]) == ["what is two"]
    assert hasher.shingles([]) == []
    assert hasher.shingles(list("abcdef")) == ["a b c d e", "b c d e f"]


def test_bucket_pairs_are_all_pairs_in_small_buckets_and_a_star_in_large_ones():
    assert sorted(bucket_pairs([7, 7, 7, 8], ["c", "a", "b", "d"])) == [("a", "b"), ("a", "c"), ("b", "c")]
    size = MAX_BUCKET_PAIRS_SIZE + 1
    members = [f"r{i:02d}" for i in range(size)]
    assert bucket_pairs([1] * size, members[::-1]) == [("r00", m) for m in members[1:]]


def test_near_duplicate_groups_are_transitive_and_keep_their_lowest_rank():
    sig = {name: np.array(values, dtype=np.uint32) for name, values in {
        "1": [1, 2, 3, 4, 5], "2": [1, 2, 3, 4, 9], "3": [1, 2, 3, 8, 9], "4": [7, 7, 7, 7, 7], "5": [1, 2, 3, 4, 6],
    }.items()}
    # 1~2 (0.8), 2~3 (0.8), 1~3 only 0.6; 4 is unlike everything; 5~1 (0.8).
    groups = near_duplicates([("1", "2"), ("2", "3"), ("3", "4"), ("5", "1")], sig, threshold=0.8)
    assert groups == {"2": ("1", 0.8), "3": ("1", 0.6), "5": ("1", 0.8)}


def test_unverified_candidates_are_not_duplicates():
    sig = {"a": np.array([1, 2, 3, 4], dtype=np.uint32), "b": np.array([1, 5, 6, 7], dtype=np.uint32)}
    assert near_duplicates([("a", "b")], sig, threshold=0.5) == {}
