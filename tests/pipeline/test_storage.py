"""Parquet shards on local disk and on a real S3-compatible server (moto): complete shards only, never overwritten."""

import pyarrow as pa
import pytest

from pipeline.storage import ShardWriter, Store, data_files

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "out"))
    options = request.getfixturevalue("s3_server")
    return Store(f"s3://distillery-test/{tmp_path.name}", options)


def test_shards_commit_by_size_and_on_flush(store):
    writer = ShardWriter(store, "accepted", SCHEMA, shard_rows=2, flush_seconds=3600)
    writer.add([{"id": "a", "n": 1}])
    assert store.shards("accepted") == []
    writer.add([{"id": "b", "n": 2}])
    assert len(store.shards("accepted")) == 1
    writer.add([{"id": "c", "n": 3}])
    writer.flush()
    assert len(store.shards("accepted")) == 2
    assert store.column_values("accepted", "id") == {"a", "b", "c"}
    assert writer.rows_written == 3


def test_a_second_writer_never_overwrites_the_first(store):
    for run in range(2):
        writer = ShardWriter(store, "accepted", SCHEMA, shard_rows=10, flush_seconds=3600)
        writer.add([{"id": f"r{run}", "n": run}])
        writer.flush()
    assert store.column_values("accepted", "id") == {"r0", "r1"}


def test_uncommitted_rows_are_invisible(store):
    writer = ShardWriter(store, "accepted", SCHEMA, shard_rows=10, flush_seconds=3600)
    writer.add([{"id": "a", "n": 1}])
    assert store.read_table("accepted") is None


def test_rows_are_counted_from_committed_shards_only(store):
    assert store.count_rows("accepted") == 0, "a folder not yet written holds no rows"
    writer = ShardWriter(store, "accepted", SCHEMA, shard_rows=2, flush_seconds=3600)
    for i in range(5):
        writer.add([{"id": str(i), "n": i}])
    assert store.count_rows("accepted") == 4, "the fifth row is not committed yet"
    writer.flush()
    assert store.count_rows("accepted") == 5 == store.read_table("accepted").num_rows


def test_text_files_round_trip(store):
    store.write_text("config.json", '{"a": 1}')
    assert store.exists("config.json") and store.read_text("config.json") == '{"a": 1}'


def test_a_folder_names_its_data_files_but_not_markers_staging_or_its_dataset_card(tmp_path):
    import fsspec

    for name in ["b.parquet", "a.jsonl", "nested/c.parquet", "_SUCCESS", "_staging/d.parquet", "nested/.hidden",
                 "README.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    fs = fsspec.filesystem("file")
    assert data_files(fs, str(tmp_path)) == [str(tmp_path / n) for n in ["a.jsonl", "b.parquet", "nested/c.parquet"]]
    assert data_files(fs, str(tmp_path / "b.parquet")) == [str(tmp_path / "b.parquet")]
