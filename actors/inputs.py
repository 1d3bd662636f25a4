"""Reading input files with Ray Data, shared by every job: one row per record, as `{origin, raw, source}`, or parsed
into a query (`parsed_rows`).

JSONL lines keep their bytes untouched (decoding errors are the parser's to report, per row); a Parquet row is
turned into the same JSON bytes a JSONL line would hold, so one parser serves both. A distill run's attempts log
(`RUN/teachers/NAME/attempts`) is joined with the run's `queries/` first (`read_attempts_log`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from pipeline.loaders import UnreadableFile, jsonl_lines, parse_raw_row, parsed_row, source_name, stored_query
from pipeline.resources import INGEST_CPUS_PER_TASK
from pipeline.schema import QUERY_SCHEMA
from pipeline.storage import Store, arrow_filesystem, data_files, filesystem
from pipeline.verifiers.audit import attempt_record

# Rows per partition of a join, roughly: a join's memory per task stays bounded as the data grows.
ROWS_PER_JOIN_PARTITION = 100_000
# Lines per block read from a JSONL file: what a read task holds, whatever the file's size.
JSONL_LINES_PER_BLOCK = 8192
# Ray Data's blocks while a corpus or a run's queries are read (its default is 128 MB): each fused step of a read task
# builds up to a block of rows, so with the default one task held about 1.1 GB of a 1M-line file (245 MB with this),
# and reading a run's 1M queries made one block in one task that grew to 3.4 GB.
READ_BLOCK_BYTES = 8 * 2**20
# `error` is set on the one row that stands for the unreadable rest of a file (`pipeline.loaders.UnreadableFile`).
RAW_ROW_SCHEMA = pa.schema([("origin", pa.string()), ("raw", pa.binary()), ("source", pa.string()),
                           ("error", pa.string())])
INGEST_ROW_SCHEMA = pa.schema([(name, pa.string()) for name in ("origin", "query", "reason", "detail", "raw")])


def small_blocks(dataset: ray.data.Dataset) -> ray.data.Dataset:
    """`dataset`, and every dataset made from it, in blocks of at most READ_BLOCK_BYTES. Set on the dataset's own
    context, not Ray Data's global one, which other datasets (a teacher's, in another thread) share."""
    dataset.context.target_max_block_size = READ_BLOCK_BYTES
    return dataset


def read_parquet(paths: str | list[str], fs: Any, **options: Any) -> ray.data.Dataset:
    """Parquet files written by the jobs, read by light tasks in small blocks (`small_blocks`)."""
    return small_blocks(ray.data.read_parquet(paths, filesystem=fs, num_cpus=INGEST_CPUS_PER_TASK, **options))


def read_raw_rows(
    paths: list[str], storage_options: dict[str, Any], max_row_bytes: int | None = None
) -> ray.data.Dataset:
    """Each path is a JSONL file (gzipped or not), a Parquet file, or a folder of them, as the jobs write them. A
    JSONL line over `max_row_bytes` is read no further than the limit (`pipeline.loaders.jsonl_lines`)."""
    datasets = []
    for path in paths:
        fs, fs_path = filesystem(path, storage_options)
        files = _files(path, fs, fs_path)
        source = source_name(path)
        if parquet := [f for f in files if f.endswith(".parquet")]:
            datasets.append(read_parquet(parquet, arrow_filesystem(fs), include_paths=True).map_batches(
                _raw_parquet_rows, batch_format="pyarrow", fn_kwargs={"files": files, "source": source},
                num_cpus=INGEST_CPUS_PER_TASK,
            ))
        if jsonl := [f for f in files if not f.endswith(".parquet")]:
            listing = small_blocks(ray.data.from_items([{"file": f} for f in jsonl], override_num_blocks=len(jsonl)))
            datasets.append(listing.map_batches(
                _read_lines, batch_size=1, num_cpus=INGEST_CPUS_PER_TASK,
                fn_kwargs={"fs": fs, "files": files, "lines": JSONL_LINES_PER_BLOCK, "max_row_bytes": max_row_bytes},
            ))
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def _read_lines(
    batch: dict[str, np.ndarray], fs: Any, files: dict[str, str], lines: int, max_row_bytes: int | None
) -> Iterator[pa.Table]:
    """A JSONL file's rows (`pipeline.loaders.jsonl_lines`), streamed from storage a block of `lines` at a time: one
    file may hold the whole corpus. A broken gzip stream ends the file with a row saying so; the rows before it and
    the other files are read as usual."""
    for file in batch["file"]:
        with fs.open(file, "rb") as f:
            block: list[dict[str, Any]] = []
            try:
                for row in jsonl_lines(files[file], f, max_row_bytes):
                    block.append(row)
                    if len(block) == lines:
                        yield pa.Table.from_pylist(block, schema=RAW_ROW_SCHEMA)
                        block = []
            except UnreadableFile as err:
                block.append(err.row())
            if block:
                yield pa.Table.from_pylist(block, schema=RAW_ROW_SCHEMA)


def _raw_parquet_rows(batch: pa.Table, files: dict[str, str], source: str) -> pa.Table:
    """Parquet rows as raw rows: each row's JSON, cited by its file."""
    return pa.Table.from_pylist([
        {"origin": f"{files[row.pop('path')]}#row", "raw": json.dumps(row, default=str).encode(), "source": source}
        for row in batch.to_pylist()
    ], schema=RAW_ROW_SCHEMA)


def parsed_rows(paths: list[str], storage_options: dict[str, Any], max_row_bytes: int) -> ray.data.Dataset:
    """Every input row as an ingest row (`pipeline.loaders.parsed_row`: the query, or why there is none), in input
    order. A `jobs.preprocess` output's `kept/` holds queries validated there: its rows are checked against the query
    record (`pipeline.loaders.stored_query`), not parsed again under this run's limits."""
    datasets = []
    for path in paths:
        if shards := preprocessed_queries(path, storage_options):
            fs, fs_path = filesystem(path, storage_options)
            datasets.append(read_parquet(shards, arrow_filesystem(fs), include_paths=True).map(
                _kept_row, fn_kwargs={"path": path.rstrip("/"), "folder": fs_path.rstrip("/")},
                num_cpus=INGEST_CPUS_PER_TASK,
            ))
        else:
            datasets.append(read_raw_rows([path], storage_options, max_row_bytes).map_batches(
                _parsed_batch, batch_format="pyarrow", fn_kwargs={"max_row_bytes": max_row_bytes},
                num_cpus=INGEST_CPUS_PER_TASK,
            ))
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def _parsed_batch(batch: pa.Table, max_row_bytes: int) -> pa.Table:
    """Raw rows parsed into ingest rows, as one table: a task's output builds up as Arrow, not as a dict a row."""
    return pa.Table.from_pylist([
        parsed_row(row["origin"], parse_raw_row(row, max_row_bytes)) for row in batch.to_pylist()
    ], schema=INGEST_ROW_SCHEMA)


def preprocessed_queries(path: str, storage_options: dict[str, Any]) -> list[str] | None:
    """The shards of `path` when it is a `jobs.preprocess` output's `kept/` folder: beside that run's summary.json,
    in QUERY_SCHEMA. Else None."""
    fs, fs_path = filesystem(path, storage_options)
    folder = fs_path.rstrip("/")
    if not folder.endswith("/kept") or not fs.exists(folder.rsplit("/", 1)[0] + "/summary.json"):
        return None
    shards = [f for f in data_files(fs, folder) if f.endswith(".parquet")]
    if not shards or not pq.read_schema(shards[0], filesystem=fs).equals(QUERY_SCHEMA):
        return None
    return shards


def _kept_row(row: dict[str, Any], path: str, folder: str) -> dict[str, Any]:
    """A kept query as an ingest row, or why it is not a query; its origin is its shard, as the user named the
    folder, and its id."""
    query = {name: _plain(row[name]) for name in QUERY_SCHEMA.names}
    return parsed_row(f"{path}{row['path'][len(folder):]}#{query['id']}", stored_query(query))


def attempts_log_run(path: str, storage_options: dict[str, Any]) -> tuple[Store, str] | None:
    """The run and teacher when `path` is a distill run's `teachers/NAME/attempts` folder, else None."""
    parts = path.rstrip("/").rsplit("/", 3)
    if len(parts) != 4 or parts[1] != "teachers" or parts[3] != "attempts":
        return None
    run = Store(parts[0], storage_options)
    return (run, parts[2]) if run.exists("queries", "_SUCCESS") and run.exists("config.json") else None


def join_by_id(left: ray.data.Dataset, right: ray.data.Dataset, join_type: str, rows: int) -> ray.data.Dataset:
    """`left` joined with `right` on `id`, hash-partitioned over the cluster for `rows` rows on the larger side. The
    aggregators ask for no CPU: a shuffle task holds its CPU until an aggregator takes its rows, so an aggregator left
    waiting for a CPU behind the engine pools, and the tasks holding the rest, would wait on each other for ever."""
    return left.join(
        right, join_type=join_type, on=("id",), num_partitions=max(1, rows // ROWS_PER_JOIN_PARTITION),
        aggregator_ray_remote_args={"num_cpus": 0},
    )


def read_attempts_log(run: Store, teacher: str) -> ray.data.Dataset:
    """Every candidate a teacher generated, as `{origin, raw, source}` rows that `jobs.verify` scores like any other:
    each is joined with its query (a hash join on Ray Data, so the log's size is the cluster's concern, not the
    driver's) and turned into a query plus `response` (`pipeline.verifiers.audit.attempt_record`)."""
    fs = run.arrow_filesystem()
    attempts = read_parquet(run.path("teachers", teacher, "attempts"), fs)
    queries = read_parquet(run.path("queries"), fs).select_columns(QUERY_SCHEMA.names)
    joined = join_by_id(attempts, queries, "left_outer", run.count_rows(f"teachers/{teacher}/attempts"))
    origin = f"{run.url.rstrip('/')}/teachers/{teacher}/attempts"
    return joined.map_batches(
        lambda batch: pa.Table.from_pylist([
            {
                "origin": f"{origin}#{row['id']}/{row['attempt']}/{row['candidate']}",
                "raw": json.dumps(attempt_record(row), default=str).encode(),
                "source": row.get("source") or teacher,
            }
            for row in batch.to_pylist()
        ], schema=RAW_ROW_SCHEMA),
        batch_format="pyarrow", num_cpus=INGEST_CPUS_PER_TASK,
    )


def _files(path: str, fs, fs_path: str) -> dict[str, str]:
    """The data files at `path` (`pipeline.storage.data_files`), each mapped to the name rows cite as their origin."""
    if not fs.isdir(fs_path):
        return {fs_path: path}
    root = fs_path.rstrip("/")
    files = {f: path.rstrip("/") + f[len(root):] for f in data_files(fs, fs_path)}
    if not files:
        raise FileNotFoundError(f"{path}: no input files in this folder")
    return files


def _plain(value: Any) -> Any:
    """Arrow's nested values arrive as numpy arrays; JSON wants lists."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
