"""Reading input files with Ray Data, shared by every job: one row per record, as `{origin, raw, source}`.

JSONL lines keep their bytes untouched (decoding errors are the parser's to report, per row); a Parquet row is
turned into the same JSON bytes a JSONL line would hold, so one parser serves both. A distill run's attempts log
(`RUN/teachers/NAME/attempts`) is joined with the run's `queries/` first (`read_attempts_log`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray

from pipeline.loaders import jsonl_lines, source_name
from pipeline.resources import INGEST_CPUS_PER_TASK
from pipeline.schema import QUERY_SCHEMA
from pipeline.storage import Store, arrow_filesystem, data_files, filesystem
from pipeline.verifiers.audit import attempt_record

# Rows of the attempts log per join partition, roughly: the join's memory per task stays bounded as the log grows.
ATTEMPTS_PER_PARTITION = 200_000


def read_raw_rows(paths: list[str], storage_options: dict[str, Any]) -> ray.data.Dataset:
    """Each path is a JSONL file (gzipped or not), a Parquet file, or a folder of them, as the jobs write them."""
    datasets = []
    for path in paths:
        fs, fs_path = filesystem(path, storage_options)
        files = _files(path, fs, fs_path)
        source = source_name(path)
        read_args = {"filesystem": arrow_filesystem(fs), "include_paths": True, "num_cpus": INGEST_CPUS_PER_TASK}
        if parquet := [f for f in files if f.endswith(".parquet")]:
            datasets.append(ray.data.read_parquet(parquet, **read_args).map(
                lambda row, files=files, source=source: {
                    "origin": f"{files[row.pop('path')]}#row",
                    "raw": json.dumps(_plain(row), default=str).encode(),
                    "source": source,
                },
                num_cpus=INGEST_CPUS_PER_TASK,
            ))
        if jsonl := [f for f in files if not f.endswith(".parquet")]:
            datasets.append(ray.data.read_binary_files(jsonl, **read_args).flat_map(
                lambda file, files=files: jsonl_lines(files[file["path"]], file["bytes"]),
                num_cpus=INGEST_CPUS_PER_TASK,
            ))
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def attempts_log_run(path: str, storage_options: dict[str, Any]) -> tuple[Store, str] | None:
    """The run and teacher when `path` is a distill run's `teachers/NAME/attempts` folder, else None."""
    parts = path.rstrip("/").rsplit("/", 3)
    if len(parts) != 4 or parts[1] != "teachers" or parts[3] != "attempts":
        return None
    run = Store(parts[0], storage_options)
    return (run, parts[2]) if run.exists("queries", "_SUCCESS") and run.exists("config.json") else None


def read_attempts_log(run: Store, teacher: str) -> ray.data.Dataset:
    """Every candidate a teacher generated, as `{origin, raw, source}` rows that `jobs.verify` scores like any other:
    each is joined with its query (a hash join on Ray Data, so the log's size is the cluster's concern, not the
    driver's) and turned into a query plus `response` (`pipeline.verifiers.audit.attempt_record`)."""
    fs = run.arrow_filesystem()
    attempts = ray.data.read_parquet(run.path("teachers", teacher, "attempts"), filesystem=fs,
                                     num_cpus=INGEST_CPUS_PER_TASK)
    queries = ray.data.read_parquet(run.path("queries"), filesystem=fs, columns=QUERY_SCHEMA.names,
                                    num_cpus=INGEST_CPUS_PER_TASK)
    rows = sum(pq.ParquetFile(shard, filesystem=run.fs).metadata.num_rows
               for shard in run.shards(f"teachers/{teacher}/attempts"))
    joined = attempts.join(queries, join_type="left_outer", num_partitions=max(1, rows // ATTEMPTS_PER_PARTITION),
                           on=("id",))
    origin = f"{run.url.rstrip('/')}/teachers/{teacher}/attempts"
    return joined.map(
        lambda row: {
            "origin": f"{origin}#{row['id']}/{row['attempt']}/{row['candidate']}",
            "raw": json.dumps(attempt_record(_plain(row)), default=str).encode(),
            "source": row.get("source") or teacher,
        },
        num_cpus=INGEST_CPUS_PER_TASK,
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
