"""Every job reads its inputs one way: JSONL or Parquet files, or a folder of them as another job wrote it."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import s3fs

from actors.inputs import read_raw_rows


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def a_job_output_folder(fs, root: str) -> None:
    """Two committed shards, plus what a job leaves beside them: a marker and an unfinished staging shard."""
    for shard, ids in (("part-0.parquet", ["a", "b"]), ("nested/part-1.parquet", ["c"])):
        with fs.open(f"{root}/{shard}", "wb") as f:
            pq.write_table(pa.table({"id": ids, "prompt": [f"question {i}" for i in ids]}), f)
    with fs.open(f"{root}/_SUCCESS", "w") as f:
        f.write("{}")
    with fs.open(f"{root}/_staging/part-2.parquet", "wb") as f:
        pq.write_table(pa.table({"id": ["half-written"], "prompt": ["x"]}), f)


def rows_by_id(dataset: ray.data.Dataset) -> dict[str, dict]:
    return {json.loads(r["raw"])["id"]: r for r in dataset.take_all()}


def test_a_local_folder_of_parquet_shards_reads_its_committed_rows_only(cluster, tmp_path):
    fs = fsspec.filesystem("file", auto_mkdir=True)
    a_job_output_folder(fs, str(tmp_path / "kept"))

    rows = rows_by_id(read_raw_rows([str(tmp_path / "kept")], {}))

    assert sorted(rows) == ["a", "b", "c"]
    assert rows["c"]["origin"] == f"{tmp_path}/kept/nested/part-1.parquet#row"
    assert json.loads(rows["a"]["raw"]) == {"id": "a", "prompt": "question a"}


def test_a_folder_on_object_storage_and_a_jsonl_file_read_together(cluster, s3_server, tmp_path):
    fs = s3fs.S3FileSystem(**s3_server)
    a_job_output_folder(fs, "distillery-test/inputs/kept")
    jsonl = tmp_path / "extra.jsonl"
    jsonl.write_text('{"id": "d", "prompt": "question d"}\n\n{"id": "e", "prompt": "question e"}\n')

    rows = rows_by_id(read_raw_rows(["s3://distillery-test/inputs/kept/", str(jsonl)], s3_server))

    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    assert rows["a"]["origin"] == "s3://distillery-test/inputs/kept/part-0.parquet#row"
    assert rows["e"]["origin"] == f"{jsonl}:3"
    assert rows["e"]["source"] == "extra"


def test_an_empty_folder_is_an_error_that_names_it(cluster, tmp_path):
    (tmp_path / "empty" / "_staging").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty: no input files"):
        read_raw_rows([str(tmp_path / "empty")], {})
