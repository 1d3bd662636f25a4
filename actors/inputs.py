"""Reading input files with Ray Data, shared by every job: one row per record, as `{origin, raw, source}`.

JSONL lines keep their bytes untouched (decoding errors are the parser's to report, per row); a Parquet row is
turned into the same JSON bytes a JSONL line would hold, so one parser serves both.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import ray

from pipeline.loaders import jsonl_lines, source_name
from pipeline.resources import INGEST_CPUS_PER_TASK
from pipeline.storage import arrow_filesystem, data_files, filesystem


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
