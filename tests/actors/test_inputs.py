"""Every job reads its inputs one way: JSONL or Parquet files, or a folder of them as another job wrote it."""

from __future__ import annotations

import gzip
import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import s3fs

from actors.inputs import parsed_rows, read_raw_rows
from pipeline.loaders import to_query
from tests.conftest import cut_off_gzip
from pipeline.schema import QUERY_SCHEMA


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


def test_a_line_over_the_limit_on_object_storage_is_read_no_further_than_the_limit(cluster, s3_server):
    """An object store's file reads a line whole when asked for one: the reader asks for the limit's worth instead."""
    fs = s3fs.S3FileSystem(**s3_server)
    with fs.open("distillery-test/inputs/huge/corpus.jsonl", "wb") as f:
        f.write(b'{"id": "a", "category": "chat", "prompt": "Say hello."}\n'
                b'{"id": "huge", "category": "chat", "prompt": "' + b"x" * 20_000_000 + b'"}\n'
                b'{"id": "b", "category": "chat", "prompt": "Say goodbye."}\n')
    path = "s3://distillery-test/inputs/huge/corpus.jsonl"

    raw = read_raw_rows([path], s3_server, max_row_bytes=1024).take_all()
    parsed = parsed_rows([path], s3_server, 1024).take_all()

    assert sorted(len(r["raw"]) for r in raw) == [55, 57, 1025]
    assert sorted((r["origin"].rsplit(":", 1)[1], r["reason"]) for r in parsed) == [
        ("1", None), ("2", "row_too_large"), ("3", None)]


def test_an_empty_folder_is_an_error_that_names_it(cluster, tmp_path):
    (tmp_path / "empty" / "_staging").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty: no input files"):
        read_raw_rows([str(tmp_path / "empty")], {})


def test_a_preprocess_outputs_kept_queries_are_read_as_they_are_not_parsed_again(cluster, tmp_path):
    """Preprocess validated them under its own limits: distill's row limit would reject the long one if it parsed it
    again, as it does the same shard anywhere else."""
    queries = [to_query({"id": i, "category": "math", "prompt": prompt, "reference": {"answer": "4"}}, "mix")
               for i, prompt in [("short", "What is 2 + 2?"), ("long", "What is 2 + 2? " + "Think hard. " * 40)]]
    table = pa.Table.from_pylist([q.to_row() for q in queries], schema=QUERY_SCHEMA)
    for folder in ("preprocessed/kept", "elsewhere/kept"):
        (tmp_path / folder).mkdir(parents=True)
        pq.write_table(table, tmp_path / folder / "part-0.parquet")
    (tmp_path / "preprocessed" / "summary.json").write_text("{}")

    kept = {json.loads(r["query"])["id"]: r for r in parsed_rows([str(tmp_path / "preprocessed/kept")], {}, 300)
            .take_all()}
    elsewhere = parsed_rows([str(tmp_path / "elsewhere/kept")], {}, 300).take_all()

    assert {i: json.loads(r["query"]) for i, r in kept.items()} == {q.id: q.to_row() for q in queries}
    assert kept["long"]["origin"] == f"{tmp_path}/preprocessed/kept/part-0.parquet#long"
    assert sorted(r["reason"] or "query" for r in elsewhere) == ["query", "row_too_large"]


def test_a_hand_edited_row_in_a_preprocess_output_is_rejected_the_rest_kept(cluster, tmp_path):
    """`kept/` is trusted to be in the query schema, not to hold only valid queries: a row edited by hand is an
    `invalid_query` reject at ingest, as it would be in any input, instead of failing the teacher stage later."""
    good = to_query({"id": "good", "category": "math", "prompt": "What is 2 + 2?", "reference": {"answer": "4"}}, "mix")
    edited = {**good.to_row(), "id": "edited", "reference": None}
    (tmp_path / "kept").mkdir()
    pq.write_table(pa.Table.from_pylist([good.to_row(), edited], schema=QUERY_SCHEMA), tmp_path / "kept" / "p.parquet")
    (tmp_path / "summary.json").write_text("{}")

    rows = {r["origin"].rsplit("#", 1)[1]: r for r in parsed_rows([str(tmp_path / "kept")], {}, 10_000).take_all()}

    assert json.loads(rows["good"]["query"]) == good.to_row()
    assert rows["edited"]["query"] is None and rows["edited"]["reason"] == "invalid_query"
    assert "needs a `reference`" in rows["edited"]["detail"]


def test_a_jsonl_file_streamed_a_few_lines_at_a_time_keeps_every_line_in_order(cluster, tmp_path, monkeypatch):
    """A corpus may be one file: it is read a block of lines at a time (bench.scale_distill measures the memory)."""
    monkeypatch.setattr("actors.inputs.JSONL_LINES_PER_BLOCK", 10)
    corpus = tmp_path / "corpus.jsonl.gz"
    corpus.write_bytes(gzip.compress(b"".join(b'{"id": "q%d"}\n\n' % i for i in range(25))))

    rows = read_raw_rows([str(corpus)], {}).take_all()

    assert [json.loads(r["raw"])["id"] for r in rows] == [f"q{i}" for i in range(25)]
    assert [r["origin"] for r in rows] == [f"{corpus}:{2 * i + 1}" for i in range(25)]


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "kept"])
def test_inputs_are_read_in_small_blocks_leaving_ray_datas_global_context_alone(cluster, tmp_path, monkeypatch, kind):
    """One block per read task would hold a whole run's queries (3.4 GB at 1M, bench.scale_distill); the size is set
    on each dataset, since teachers build theirs side by side in threads over one global context."""
    monkeypatch.setattr("actors.inputs.READ_BLOCK_BYTES", 16 * 1024)
    monkeypatch.setattr("actors.inputs.JSONL_LINES_PER_BLOCK", 10_000)
    queries = [to_query({"id": f"q{i}", "prompt": f"question {i} " + "x" * 100, "category": "general"}, "t")
               for i in range(2000)]
    if kind == "jsonl":
        path = tmp_path / "corpus.jsonl"
        path.write_text("".join(json.dumps(q.to_row()) + "\n" for q in queries))
    else:
        (tmp_path / "kept").mkdir()
        path = tmp_path / "kept" / "part-0.parquet"
        pq.write_table(pa.Table.from_pylist([q.to_row() for q in queries], schema=QUERY_SCHEMA), path)
        if kind == "kept":
            (tmp_path / "summary.json").write_text("{}")
            path = tmp_path / "kept"
    default = ray.data.DataContext.get_current().target_max_block_size

    dataset = parsed_rows([str(path)], {}, 10_000).materialize()

    assert dataset.count() == 2000 and dataset.num_blocks() >= 10
    assert ray.data.DataContext.get_current().target_max_block_size == default


def test_a_cut_off_gzip_file_gives_its_readable_rows_and_one_row_saying_where_it_breaks(cluster, tmp_path):
    (tmp_path / "cut.jsonl.gz").write_bytes(cut_off_gzip(2000))
    whole = [{"id": f"w{i}", "category": "general", "prompt": "p"} for i in range(3)]
    (tmp_path / "whole.jsonl").write_text("".join(json.dumps(row) + "\n" for row in whole))

    rows = parsed_rows([str(tmp_path)], {}, 10_000).take_all()

    queries = [json.loads(r["query"])["id"] for r in rows if r["query"] is not None]
    broken = [r for r in rows if r["query"] is None]
    read = len(queries) - 3
    assert read > 0 and queries == [f"q{i}" for i in range(read)] + ["w0", "w1", "w2"]
    assert [(r["origin"], r["reason"]) for r in broken] == [(f"{tmp_path}/cut.jsonl.gz:{read + 1}", "unreadable_file")]
    assert f"breaks after line {read}" in broken[0]["detail"]
