"""Which row of each id comes first, over a corpus too large to hold its ids in memory.

Ingest numbers the valid rows in input order (`position`) and stages them as Parquet shards. The ids and positions
are split by a hash of the id into buckets of at most `QUERIES_PER_BUCKET` rows, written beside the staged rows; each
bucket is then grouped by id in memory, one at a time. What stays in memory across buckets is the positions of the
rows that are *not* first, 8 bytes per duplicate: the memory follows the corpus's duplicates, not its size.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.storage import Store

# Rows of one bucket: its ids and positions are in memory at once (about 100 bytes a row).
QUERIES_PER_BUCKET = 100_000
# Rows all buckets buffer together, while the staged rows are split, before the fullest writes a shard.
_PENDING_ROWS = 65_536
_KEYS = ["id", "position"]


def staged_first_rows(store: Store, staged: str, rows: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    """For each shard of `staged` (a folder of `rows` rows with `id` and `position` columns, in position order):
    (its rows that come first for their id, its rows whose id came earlier)."""
    later = duplicate_positions(store, staged, rows)
    for shard in store.shards(staged):
        table = pq.read_table(shard, filesystem=store.fs)
        duplicate = pc.is_in(table.column("position"), value_set=later)
        yield table.filter(pc.invert(duplicate)), table.filter(duplicate)


def duplicate_positions(store: Store, staged: str, rows: int) -> pa.Array:
    """Positions of the rows of `staged` whose id has a row at a lower position."""
    buckets = max(1, -(-rows // QUERIES_PER_BUCKET))
    parts = [store.read_table(staged, columns=_KEYS)] if buckets == 1 else _split(store, staged, buckets)
    later = []
    for keys in parts:
        if keys is None or not keys.num_rows:
            continue
        firsts = keys.group_by("id").aggregate([("position", "min")]).column("position_min")
        later.append(keys.column("position").filter(pc.invert(pc.is_in(keys.column("position"), value_set=firsts))))
    return pa.chunked_array([c for chunks in later for c in chunks.chunks], pa.int64()).combine_chunks()


def _split(store: Store, staged: str, buckets: int) -> Iterator[pa.Table | None]:
    """The ids and positions of `staged`, bucket by bucket, each bucket written to `staged/buckets/N/` first."""
    root = posixpath.join(staged, "buckets")
    store.remove(root)
    pending: list[list[pa.Table]] = [[] for _ in range(buckets)]
    sequence = [0] * buckets
    held = [0] * buckets  # rows pending per bucket

    def write(bucket: int) -> None:
        table = pa.concat_tables(pending[bucket])
        store.write_shard(f"{root}/{bucket:05d}", f"part-{sequence[bucket]:05d}.parquet", table)
        sequence[bucket] += 1
        pending[bucket], held[bucket] = [], 0

    for shard in store.shards(staged):
        keys = pq.read_table(shard, columns=_KEYS, filesystem=store.fs)
        ids = keys.column("id").to_numpy(zero_copy_only=False)
        bucket_of = pd.util.hash_array(ids, categorize=False) % np.uint64(buckets)
        for bucket in map(int, np.unique(bucket_of)):
            pending[bucket].append(part := keys.filter(pa.array(bucket_of == bucket)))
            held[bucket] += part.num_rows
        while sum(held) >= _PENDING_ROWS:
            write(held.index(max(held)))
    for bucket in range(buckets):
        if pending[bucket]:
            write(bucket)
    for bucket in range(buckets):
        yield store.read_table(f"{root}/{bucket:05d}")
