"""Checks before a preprocessing run that only preprocessing has: every benchmark must load completely, and they must
be named or declined. (Inputs and outputs: tests/pipeline/test_checks.py.)"""

import json

import pytest

from pipeline.config import PreprocessConfig
from pipeline.preprocess.preflight import load_benchmarks, preflight
from tests.pipeline.test_checks import QUERY, refusal, write

MATH = json.dumps({"problem": "What is 1+1?", "answer": "2"})


def test_benchmarks_load_per_file_as_given(tmp_path):
    math = write(tmp_path / "math.jsonl", MATH + "\n" + MATH.replace("1+1", "2+2"))
    loaded = load_benchmarks([math, "humaneval"], {})
    assert {path: len(items) for path, items in loaded.items()} == {math: 2, "humaneval": 164}


BAD_BENCHMARKS = {
    "missing": (lambda tmp: str(tmp / "math500.jsonl"), "math500.jsonl: No such file or directory"),
    "no-items": (lambda tmp: write(tmp / "b.jsonl", "\n"), "b.jsonl: holds no items"),
    "unreadable-rows": (lambda tmp: write(tmp / "b.jsonl", MATH + '\n{"truncated\n{"x": 1}\n'), "2 unreadable rows"),
    "not-a-data-file": (lambda tmp: write(tmp / "b.csv", "problem,answer"), "b.csv: not JSONL, JSONL.gz or Parquet"),
    "not-gzip": (lambda tmp: write(tmp / "b.jsonl.gz", MATH), "b.jsonl.gz: Not a gzipped file"),
}


@pytest.mark.parametrize("make, message", BAD_BENCHMARKS.values(), ids=BAD_BENCHMARKS.keys())
def test_a_benchmark_that_does_not_load_completely_is_refused(tmp_path, make, message):
    assert message in refusal(load_benchmarks, [make(tmp_path)], {})


def test_benchmarks_must_be_named_or_declined(tmp_path):
    inputs, output = [write(tmp_path / "q.jsonl", QUERY)], str(tmp_path / "out")
    message = refusal(preflight, inputs, output, PreprocessConfig())
    assert "no benchmarks given: pass --benchmarks FILE" in message and "`--benchmarks none`" in message
    declined = PreprocessConfig().with_benchmarks(["none"])
    assert preflight(inputs, output, declined) == {}
