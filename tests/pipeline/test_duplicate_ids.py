"""The first row of each id, found bucket by bucket of ids: the same answer whether the ids fit one bucket or many."""

import random

import pyarrow as pa
import pytest

from pipeline import duplicate_ids
from pipeline.duplicate_ids import staged_first_rows
from pipeline.storage import ShardWriter, Store

SCHEMA = pa.schema([("id", pa.string()), ("position", pa.int64()), ("text", pa.string())])


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "out"))
    return Store(f"s3://distillery-test/{tmp_path.name}", request.getfixturevalue("s3_server"))


def stage(store: Store, ids: list[str], shard_rows: int = 7) -> None:
    writer = ShardWriter(store, "_ingest", SCHEMA, shard_rows, flush_seconds=3600)
    writer.add({"id": id_, "position": i, "text": f"row {i}"} for i, id_ in enumerate(ids))
    writer.flush()


def split(store: Store, rows: int) -> tuple[list[dict], list[dict]]:
    firsts, laters = [], []
    for first, later in staged_first_rows(store, "_ingest", rows):
        firsts += first.to_pylist()
        laters += later.to_pylist()
    return firsts, laters


@pytest.mark.parametrize("bucket_rows, pending_rows", [(1_000, 65_536), (5, 65_536), (5, 7), (1, 1)])
def test_each_id_keeps_its_first_row_and_every_later_row_is_a_duplicate(store, monkeypatch, bucket_rows, pending_rows):
    """Whatever the size of a bucket, and however few rows the buckets hold before one is written out."""
    monkeypatch.setattr(duplicate_ids, "QUERIES_PER_BUCKET", bucket_rows)
    monkeypatch.setattr(duplicate_ids, "_PENDING_ROWS", pending_rows)
    rng = random.Random(0)
    ids = [f"q{rng.randrange(40)}" for _ in range(120)]
    stage(store, ids)
    firsts, laters = split(store, len(ids))

    first_position = {}
    for position, id_ in enumerate(ids):
        first_position.setdefault(id_, position)
    assert sorted(r["position"] for r in firsts) == sorted(first_position.values())
    assert sorted(r["position"] for r in laters) == sorted(set(range(len(ids))) - set(first_position.values()))
    assert all(r["text"] == f"row {r['position']}" for r in firsts + laters)  # whole rows, not just the keys


def test_shards_come_back_in_staged_order_so_queries_keep_input_order(store):
    ids = [f"q{i}" for i in range(30)]
    stage(store, ids)
    firsts, laters = split(store, len(ids))
    assert [r["id"] for r in firsts] == ids and laters == []


def test_the_buckets_are_written_beside_the_staged_rows_and_not_read_as_staged_rows(store, monkeypatch):
    monkeypatch.setattr(duplicate_ids, "QUERIES_PER_BUCKET", 4)
    ids = ["a", "b", "a", "c", "d", "b", "e", "f", "a", "g"]
    stage(store, ids, shard_rows=3)
    firsts, laters = split(store, len(ids))
    assert [r["id"] for r in firsts] == ["a", "b", "c", "d", "e", "f", "g"]
    assert [r["position"] for r in laters] == [2, 5, 8]
    assert store.shards("_ingest/buckets/00000")  # the split is on storage, not in memory


def test_nothing_staged_gives_nothing(store):
    assert split(store, 0) == ([], [])


def test_buckets_a_killed_split_left_behind_are_not_counted(store, monkeypatch):
    monkeypatch.setattr(duplicate_ids, "QUERIES_PER_BUCKET", 4)
    ids = ["a", "b", "a", "c", "d", "b", "e", "f"]
    stage(store, ids, shard_rows=3)
    stale = pa.table({"id": ["b"], "position": pa.array([-1], pa.int64())})  # read, it would make b's first row later
    for bucket in ("00000", "00001"):  # as a kill mid-split would leave them
        store.write_shard(f"_ingest/buckets/{bucket}", "part-99999.parquet", stale)
    firsts, laters = split(store, len(ids))
    assert [r["id"] for r in firsts] == ["a", "b", "c", "d", "e", "f"]
    assert [r["position"] for r in laters] == [2, 5]
