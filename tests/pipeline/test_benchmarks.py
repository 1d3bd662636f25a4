"""Benchmarks: each published format becomes queries the existing verifiers route and score, posed with the paper's
prompts; LiveCodeBench problems are selected by release and contest date and graded the way LiveCodeBench grades
them, in the real sandbox; nothing that cannot be posed is dropped without a reason."""

import base64
import json
import os
import pickle
import zlib
from pathlib import Path

import pytest

from pipeline.benchmarks import (
    BENCHMARKS,
    MATH_PROMPT_SUFFIX,
    BenchmarkError,
    decode_test_cases,
    load_benchmark,
)
from pipeline.schema import Category
from pipeline.verifiers.code import CodeVerifier, same_output_lines
from pipeline.verifiers.routes import Available, Route, route
from pipeline.verifiers.sandbox import Limits
from tests.conftest import shared_file

DATA = Path(__file__).resolve().parents[1] / "data"
LCB = DATA / "livecodebench_sample.jsonl"
GPQA = DATA / "gpqa_sample.csv"
EVERYTHING = Available(judge=False, code=True)


def lcb_rows() -> list[dict]:
    return [json.loads(line) for line in LCB.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---- registry -----------------------------------------------------------------------------------------------------


def test_registry_holds_the_papers_protocol():
    assert {name: spec.samples_per_problem for name, spec in BENCHMARKS.items()} == {
        "aime24": 64, "aime25": 64, "math500": 4, "gsm8k": 1, "humaneval": 1, "livecodebench": 16, "gpqa_diamond": 1,
    }
    assert BENCHMARKS["livecodebench"].test_wall_s == 6.0
    assert [n for n, s in BENCHMARKS.items() if not s.path_required] == ["humaneval"]


@pytest.mark.parametrize(
    "name, path, message",
    [
        pytest.param("aime24", "/nowhere/aime24.jsonl", "/nowhere/aime24.jsonl", id="missing-file"),
        pytest.param("math500", None, "needs a `path`", id="no-path"),
        pytest.param("mmlu", "x.jsonl", "unknown", id="unknown-benchmark"),
    ],
)
def test_a_benchmark_that_cannot_be_read_is_refused_naming_it(name, path, message):
    with pytest.raises(BenchmarkError, match=message):
        load_benchmark(name, path)


def test_a_missing_s3_object_is_refused_naming_it(s3_server):
    with pytest.raises(BenchmarkError, match="s3://distillery-test/absent/gpqa.csv"):
        load_benchmark("gpqa_diamond", "s3://distillery-test/absent/gpqa.csv", storage_options=s3_server)


def test_benchmarks_read_from_s3(s3_server):
    import s3fs

    s3fs.S3FileSystem(**s3_server).put(str(LCB), "distillery-test/bench/livecodebench_sample.jsonl")
    loaded = load_benchmark("livecodebench", "s3://distillery-test/bench/livecodebench_sample.jsonl",
                            storage_options=s3_server)
    assert len(loaded.queries) == 4 and loaded.skipped == []


# ---- math -----------------------------------------------------------------------------------------------------------

MATH = [
    ("aime24", "benchmarks/aime24.jsonl", 30, "aime24-60", "204"),
    ("aime25", "benchmarks/aime25.jsonl", 30, "aime25-0", "70"),
    ("math500", "benchmarks/math500.jsonl", 500, "math500-test/precalculus/807.json",
     "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("gsm8k", "benchmarks/gsm8k_test.jsonl", 1319, "gsm8k-1", "18"),
]


@pytest.mark.parametrize("name, relpath, rows, first_id, first_answer", MATH, ids=[m[0] for m in MATH])
def test_math_benchmarks_load_whole_with_the_papers_prompt(name, relpath, rows, first_id, first_answer):
    loaded = load_benchmark(name, str(shared_file(relpath)))
    assert len(loaded.queries) == rows and loaded.skipped == []
    assert len({q.id for q in loaded.queries}) == rows
    first = loaded.queries[0]
    assert (first.id, first.reference["answer"]) == (first_id, first_answer)
    assert first.messages[0].content.endswith(
        "\n\nLet's think step by step and output the final answer within \\boxed{}."
    )
    assert {route(q, EVERYTHING).route for q in loaded.queries} == {Route.math}


def test_limit_keeps_the_first_problems():
    loaded = load_benchmark("math500", str(shared_file("benchmarks/math500.jsonl")), limit=3)
    assert [q.id for q in loaded.queries] == [q.id for q in load_benchmark(
        "math500", str(shared_file("benchmarks/math500.jsonl"))).queries[:3]]


def test_rows_of_another_benchmark_or_broken_rows_are_skipped_with_a_reason(tmp_path):
    path = tmp_path / "aime.jsonl"
    path.write_text('{"id": 1, "problem": "1+1?", "answer": "2"}\n{"question": "q", "answer": "#### 4"}\n{oops\n'
                    '{"id": 1, "problem": "again", "answer": "3"}\n')
    loaded = load_benchmark("aime24", str(path))
    assert [q.messages[0].content for q in loaded.queries] == ["1+1?" + MATH_PROMPT_SUFFIX]
    assert [(s["id"], s["reason"]) for s in loaded.skipped] == [
        (f"{path}:2", "wrong_format"), (f"{path}:3", "malformed_json"), ("aime24-1", "duplicate_id"),
    ]


# ---- HumanEval ------------------------------------------------------------------------------------------------------


def test_humaneval_comes_from_the_pypi_package_and_its_canonical_solutions_pass():
    loaded = load_benchmark("humaneval", limit=3)
    assert len(load_benchmark("humaneval").queries) == 164
    first = loaded.queries[0]
    assert first.id == "humaneval-0" and "def has_close_elements" in first.messages[0].content
    assert route(first, EVERYTHING).route is Route.code
    import gzip

    from pipeline.preprocess.benchmarks import resolve_benchmark

    rows = [json.loads(line) for line in gzip.decompress(Path(resolve_benchmark("humaneval")).read_bytes())
            .splitlines()[:3]]
    verifier = CodeVerifier(max_tests=10, limits=Limits(wall_s=10.0))
    try:
        for query, row in zip(loaded.queries, rows):
            answer = f"```python\n{row['prompt'] + row['canonical_solution']}```"
            assert verifier.verify(query, answer).score == 1.0, query.id
    finally:
        verifier.close()


# ---- LiveCodeBench: selection and decoding --------------------------------------------------------------------------


def test_livecodebench_fixture_loads_both_test_kinds_with_private_tests():
    loaded = load_benchmark("livecodebench", str(LCB))
    assert loaded.skipped == []
    by_id = {q.id: q for q in loaded.queries}
    assert list(by_id) == ["livecodebench-abc900_a", "livecodebench-2000B", "livecodebench-9001",
                           "livecodebench-9002"]
    add = by_id["livecodebench-abc900_a"].reference["tests"]
    assert add["kind"] == "stdio" and len(add["cases"]) == 3, "public + the compressed private tests"
    two_sum = by_id["livecodebench-9001"].reference["tests"]["asserts"]
    assert two_sum[1] == "assert lcb_call('twoSum', '[3, 2, 4]\\n6') == [1, 2]"
    assert loaded.max_tests == 3
    assert all(route(q, EVERYTHING).route is Route.code for q in loaded.queries)


def test_livecodebench_prompts_follow_its_own_template():
    stdin, _, functional, _ = load_benchmark("livecodebench", str(LCB)).queries
    text = stdin.messages[0].content
    assert text.startswith("You are an expert Python programmer.") and "### Question:\nYou are given two" in text
    assert "Read the inputs from stdin solve the problem and write the answer to stdout" in text
    assert "```python\n# YOUR CODE HERE\n```" in text
    text = functional.messages[0].content
    assert "You will use the following starter code" in text and "def twoSum(self, nums: List[int]" in text
    assert text.endswith("### Answer: (use the provided format with backticks)\n\n")


@pytest.mark.parametrize(
    "date_from, date_to, expected",
    [
        pytest.param(None, None, ["abc900_a", "2000B", "9001", "9002"], id="no-window"),
        pytest.param("2023-09-03", None, ["2000B", "9001", "9002"], id="from-is-inclusive"),
        pytest.param(None, "2023-09-03", ["abc900_a", "9001"], id="to-is-inclusive"),
        pytest.param("2024-01-01", "2024-05-01", ["2000B"], id="window"),
        pytest.param("2025-01-01", None, [], id="after-everything"),
    ],
)
def test_the_contest_date_window_selects_problems(date_from, date_to, expected):
    loaded = load_benchmark("livecodebench", str(LCB), date_from=date_from, date_to=date_to)
    assert [q.id.removeprefix("livecodebench-") for q in loaded.queries] == expected


def test_releases_are_cumulative_and_read_from_the_datasets_file_names(tmp_path):
    rows = {r["question_id"]: r for r in lcb_rows()}
    folder = tmp_path / "code_generation_lite"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [rows["abc900_a"], rows["9001"]])  # release_v1
    write_jsonl(folder / "test2.jsonl", [rows["2000B"]])
    write_jsonl(folder / "test4.jsonl", [rows["9002"]])
    ids = {v: [q.id.removeprefix("livecodebench-") for q in load_benchmark(
        "livecodebench", str(folder), release_version=v).queries] for v in ["v1", "release_v2", "v3", 4, None]}
    assert ids == {"v1": ["abc900_a", "9001"], "release_v2": ["abc900_a", "9001", "2000B"],
                   "v3": ["abc900_a", "9001", "2000B"], 4: ["abc900_a", "9001", "2000B", "9002"],
                   None: ["abc900_a", "9001", "2000B", "9002"]}
    both = load_benchmark("livecodebench", str(folder), release_version="v4", date_from="2023-07-01")
    assert [q.id for q in both.queries] == ["livecodebench-9001", "livecodebench-2000B", "livecodebench-9002"]


def test_a_release_version_field_wins_and_rows_of_unknown_release_are_skipped(tmp_path):
    first, second, third, _ = lcb_rows()
    path = write_jsonl(tmp_path / "mine.jsonl", [{**first, "release_version": "release_v1"},
                                                  {**second, "release_version": "v3"}, third])
    loaded = load_benchmark("livecodebench", path, release_version="v2")
    assert [q.id for q in loaded.queries] == ["livecodebench-abc900_a"]
    assert [(s["id"], s["reason"]) for s in loaded.skipped] == [(f"{path}:3", "unknown_release")]
    with pytest.raises(BenchmarkError, match="release_version"):
        load_benchmark("livecodebench", path, release_version="newest")


def test_a_hostile_pickle_in_private_tests_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    hostile = base64.b64encode(zlib.compress(pickle.dumps(Exploit()))).decode()
    row = {**lcb_rows()[0], "private_test_cases": hostile}
    loaded = load_benchmark("livecodebench", write_jsonl(tmp_path / "lcb.jsonl", [row]))
    assert loaded.queries == [] and not marker.exists()
    [skipped] = loaded.skipped
    assert skipped["reason"] == "unsafe_private_tests" and "posix.system" in skipped["detail"]


@pytest.mark.parametrize(
    "change, reason",
    [
        pytest.param({"private_test_cases": "not base64 and not json"}, "bad_test_cases", id="garbage-private"),
        pytest.param({"public_test_cases": "[]", "private_test_cases": ""}, "bad_test_cases", id="no-tests"),
        pytest.param({"public_test_cases": json.dumps([{"input": "x", "output": "1", "testtype": "functional"}])},
                     "bad_test_cases", id="functional-input-not-json"),
        pytest.param({"metadata": json.dumps({"func_name": "two sum"})}, "bad_test_cases", id="bad-func-name"),
        pytest.param({"contest_date": "someday"}, "bad_contest_date", id="bad-date"),
    ],
)
def test_problems_that_cannot_be_posed_are_skipped_with_a_reason(tmp_path, change, reason):
    row = {**lcb_rows()[2], **change}
    loaded = load_benchmark("livecodebench", write_jsonl(tmp_path / "lcb.jsonl", [row]), date_from="2020-01-01")
    assert loaded.queries == [] and [s["reason"] for s in loaded.skipped] == [reason]


def test_private_tests_decode_from_the_release_encoding():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_test_cases(base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()) == tests
    assert decode_test_cases(json.dumps(tests)) == tests


# ---- LiveCodeBench: grading in the real sandbox -----------------------------------------------------------------


@pytest.mark.parametrize(
    "actual, expected, same",
    [
        pytest.param(b"2.5\n4\n", "2.500000\n4\n", True, id="decimal-equal"),
        pytest.param(b"  8  \n\n", "8\n", True, id="stripped"),
        pytest.param(b"2.5 4\n", "2.500000\n4\n", False, id="line-structure-matters"),
        pytest.param(b"1.333333\n2", "1.3333333\n2\n", False, id="no-float-tolerance"),
        pytest.param(b"50000000000000000\n", "50000000000000001\n", False, id="big-ints-exact"),
        pytest.param(b"Yes\n", "yes\n", False, id="case-sensitive"),
    ],
)
def test_stdout_is_compared_the_way_livecodebench_does(actual, expected, same):
    assert same_output_lines(actual, expected) is same


@pytest.fixture(scope="module")
def lcb_verifier():
    verifier = CodeVerifier(max_tests=100,
                            limits=Limits(wall_s=BENCHMARKS["livecodebench"].test_wall_s))
    yield verifier
    verifier.close()


SOLUTIONS = {
    "abc900_a": [
        ("a, b = map(int, input().split())\nprint(a + b)", 1.0),
        ("import sys\ndef main():\n    a, b = map(int, sys.stdin.read().split())\n    print(a + b)\n"
         "if __name__ == '__main__':\n    main()", 1.0),
        ("a, b = map(int, input().split())\nprint(a * b)", 0.0),  # 3*5 != 8, 10**18 != 2*10**9, -16 != 0
    ],
    "2000B": [
        ("n = int(input())\nr = list(map(int, input().split()))\nprint(f'{sum(r) / n:.6f}')\nprint(max(r))", 1.0),
        ("n = int(input())\nr = list(map(int, input().split()))\nprint(sum(r) / n)\nprint(max(r))", 2 / 3),
        ("n = int(input())\nr = list(map(int, input().split()))\nprint(sum(r) / n, max(r))", 0.0),
    ],
    "9001": [
        ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
         "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
         "                return (seen[target - x], i)\n            seen[x] = i", 1.0),
        ("class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]", 2 / 3),
        ("class Solution:\n    def twoSum(self, nums, target):\n        raise ValueError('no')", 0.0),
    ],
    "9002": [
        ("class Solution:\n    def maxFrequency(self, s: str) -> int:\n        return max(Counter(s).values())", 1.0),
        # Right on "a" and "abcabcab" by chance, wrong on "leetcode".
        ("class Solution:\n    def maxFrequency(self, s: str) -> int:\n        return len(set(s))", 2 / 3),
        ("class Solution:\n    def maxFrequency(self, s):\n        while True:\n            pass", 0.0),
    ],
}


@pytest.mark.parametrize("problem", list(SOLUTIONS), ids=list(SOLUTIONS))
def test_livecodebench_solutions_are_graded_right(lcb_verifier, problem):
    query = next(q for q in load_benchmark("livecodebench", str(LCB)).queries if q.id.endswith(f"-{problem}"))
    for program, score in SOLUTIONS[problem]:
        verdict = lcb_verifier.verify(query, f"Here it is.\n```python\n{program}\n```")
        assert verdict.score == pytest.approx(score), (program, verdict.details)
        assert (verdict.failure is None) is (score == 1.0)


# ---- GPQA -----------------------------------------------------------------------------------------------------------


def test_gpqa_lists_four_options_and_keeps_the_correct_letter():
    loaded = load_benchmark("gpqa_diamond", str(GPQA))
    assert [q.id for q in loaded.queries] == ["gpqa_diamond-recFORCE0001", "gpqa_diamond-recDNA00002",
                                             "gpqa_diamond-recMN000003"]
    assert [(s["reason"], s["detail"]) for s in loaded.skipped] == [
        ("missing_field", "empty or missing Incorrect Answer 3")
    ]
    for query in loaded.queries:
        assert query.category is Category.science and route(query, EVERYTHING).route is Route.choice
        letter, text = query.reference["answer"], query.reference["answer_text"]
        assert f"\n{letter}) {text}" in query.messages[0].content
        assert [line[:3] for line in query.messages[0].content.splitlines()[-4:]] == ["A) ", "B) ", "C) ", "D) "]


def test_gpqa_shuffle_is_fixed_by_the_seed_and_differs_across_seeds():
    def options(seed):
        return [q.messages[0].content.splitlines()[-4:] for q in load_benchmark("gpqa_diamond", str(GPQA),
                                                                                seed=seed).queries]

    assert options(0) == options(0)
    assert any(options(0) != options(seed) for seed in (1, 2, 3))
    letters = {seed: [q.reference["answer"] for q in load_benchmark("gpqa_diamond", str(GPQA), seed=seed).queries]
               for seed in range(8)}
    assert len({tuple(v) for v in letters.values()}) > 1, "the correct answer does not always sit at one letter"


def test_gpqa_reads_jsonl_with_the_same_columns(tmp_path):
    import csv

    with GPQA.open() as f:
        rows = list(csv.DictReader(f))
    path = write_jsonl(tmp_path / "gpqa.jsonl", rows)
    assert load_benchmark("gpqa_diamond", path).queries == load_benchmark("gpqa_diamond", str(GPQA)).queries
