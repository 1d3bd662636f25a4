"""What `jobs.preprocess` checks before Ray starts and before it writes or removes anything, so that a bad argument
costs nothing: every input exists, is JSONL, JSONL.gz or Parquet (or a folder of them), can be read and holds rows;
benchmarks are named (or explicitly `none`), and each loads and holds items; the output folder takes a write.

The checks every job shares are in `pipeline.checks`; what only preprocessing has is here, the benchmarks. Every
failure is a `ConfigError` of one line that names the path and what is wrong. Must never import Ray.
"""

from __future__ import annotations

from typing import Any

from pipeline.checks import (
    DATA_SUFFIXES, NOT_DATA, UNREADABLE, check_inputs, check_output, filesystem_for, why,
)
from pipeline.config import ConfigError, PreprocessConfig
from pipeline.preprocess.benchmarks import BenchmarkError, BenchmarkItem, benchmark_items, resolve_benchmark

NO_BENCHMARKS = (
    "decontamination: no benchmarks given: pass --benchmarks FILE [FILE ...] (or `humaneval`), or set "
    "decontamination.benchmarks in --config; `--benchmarks none` (or `benchmarks: none`) runs without them"
)


def preflight(inputs: list[str], output: str, config: PreprocessConfig) -> dict[str, list[BenchmarkItem]]:
    """Every check, cheapest first; returns the benchmark items per benchmark file, as the run needs them."""
    check_inputs(inputs, config.storage_options)
    if config.decontamination.benchmarks is None:
        raise ConfigError(NO_BENCHMARKS)
    benchmarks = load_benchmarks(config.decontamination.benchmarks, config.storage_options)
    check_output(output, config.storage_options)
    return benchmarks


def load_benchmarks(paths: list[str], storage_options: dict[str, Any]) -> dict[str, list[BenchmarkItem]]:
    """Every item of every benchmark file, by the path as given, read on the driver: benchmarks are small, and every
    worker needs all of them. A file without items fails like a missing one: it would check against nothing."""
    loaded: dict[str, list[BenchmarkItem]] = {}
    for path in paths:
        resolved = resolve_benchmark(path)
        if not resolved.endswith(DATA_SUFFIXES):
            raise BenchmarkError(f"benchmark {path}: {NOT_DATA}")
        fs, fs_path = filesystem_for("benchmark", resolved, storage_options)
        try:
            with fs.open(fs_path, "rb") as f:
                items = benchmark_items(resolved, f.read())
        except UNREADABLE as err:
            raise BenchmarkError(f"benchmark {path}: {why(err)}") from None
        if not items:
            raise BenchmarkError(f"benchmark {path}: holds no items")
        loaded[path] = items
    return loaded
