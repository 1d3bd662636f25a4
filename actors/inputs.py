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
from pipeline.storage import arrow_filesystem, filesystem


def read_raw_rows(paths: list[str], storage_options: dict[str, Any]) -> ray.data.Dataset:
    datasets = []
    for path in paths:
        fs, fs_path = filesystem(path, storage_options)
        remote_args = {"num_cpus": INGEST_CPUS_PER_TASK}
        if fs_path.endswith(".parquet"):
            source = source_name(path)
            dataset = ray.data.read_parquet(fs_path, filesystem=arrow_filesystem(fs), ray_remote_args=remote_args).map(
                lambda row, path=path, source=source: {
                    "origin": f"{path}#row", "raw": json.dumps(_plain(row), default=str).encode(), "source": source,
                },
                num_cpus=INGEST_CPUS_PER_TASK,
            )
        else:
            dataset = ray.data.read_binary_files(
                fs_path, filesystem=arrow_filesystem(fs), ray_remote_args=remote_args
            ).flat_map(lambda file, path=path: jsonl_lines(path, file["bytes"]), num_cpus=INGEST_CPUS_PER_TASK)
        datasets.append(dataset)
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def _plain(value: Any) -> Any:
    """Arrow's nested values arrive as numpy arrays; JSON wants lists."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
