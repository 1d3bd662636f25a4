"""Turn input rows into `Query` records: the native format, and the public datasets people distill from.

Each public dataset is recognised by its fields, not its file name, so a user can point distillery at the same
dataset downloaded anywhere (GSM8K, MATH/MATH500, AIME, MBPP, HumanEval, CodeNet-style stdio problems,
LiveCodeBench, IFEval, MT-Bench, Arena-Hard, ARC). A row that fits no shape, or fits one badly, becomes a
`RowError` with a snake_case reason; nothing here raises on a bad row. A gzipped file whose stream breaks raises
`UnreadableFile` after its last readable line, which the jobs report as one more row.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydantic import ValidationError

from pipeline.schema import Category, Query

MAX_ROW_BYTES = 1_000_000
_SKIP_BYTES = 2**20  # the rest of a line too long to keep is read past this much at a time


@dataclass(frozen=True)
class RowError:
    reason: str
    detail: str
    raw: str  # truncated copy of the offending row


def parse_json_line(line: bytes, source: str, max_row_bytes: int = MAX_ROW_BYTES) -> Query | RowError:
    """One JSONL line to a query, or the reason it is not one."""
    raw_preview = line[:2000].decode("utf-8", errors="replace")
    if len(line) > max_row_bytes:
        return RowError("row_too_large", f"a line of more than {max_row_bytes} bytes (the limit)", raw_preview)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return RowError("invalid_utf8", str(err), raw_preview)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return RowError("malformed_json", str(err), raw_preview)
    return to_query(record, source)


def to_query(record: Any, source: str) -> Query | RowError:
    """A decoded record (JSON object or Parquet row) to a query, or the reason it is not one."""
    raw_preview = _preview(record)
    if not isinstance(record, dict):
        return RowError("not_an_object", f"expected a JSON object, got {type(record).__name__}", raw_preview)
    if _has_lone_surrogate(record):
        return RowError("invalid_unicode", "text contains unpaired surrogate code points", raw_preview)
    for name, matches, convert in _SHAPES:
        if matches(record):
            try:
                data = convert(record)
                data.setdefault("source", source)
                if name != "native":
                    # Public datasets number their rows per file: prefix with the source to keep ids unique.
                    data["id"] = f"{source}-{data['id']}" if data.get("id") else ""
                    data["metadata"] = {"format": name, **data.get("metadata", {})}
                return Query.model_validate(data)
            except ValidationError as err:
                return RowError("invalid_query", _validation_message(err), raw_preview)
            except (KeyError, TypeError, ValueError) as err:
                return RowError("invalid_query", f"{name}: {type(err).__name__}: {err}", raw_preview)
    return RowError("unknown_record_shape", f"fields {sorted(record)} match no known format", raw_preview)


def stored_query(row: dict[str, Any]) -> Query | RowError:
    """A row in QUERY_SCHEMA's columns (a `jobs.preprocess` output's `kept/`) to a query, or the reason it is not one:
    checked against the record, as a hand-edited shard may hold anything, without another pass through the shapes."""
    try:
        return Query.from_row(row)
    except ValidationError as err:
        return RowError("invalid_query", _validation_message(err), _preview(row))
    except (TypeError, ValueError) as err:  # `reference` or `metadata` that is not JSON
        return RowError("invalid_query", f"{type(err).__name__}: {err}", _preview(row))


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "row"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _preview(record: Any) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=str)[:2000]
    except (TypeError, ValueError):
        return repr(record)[:2000]


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


# ---- dataset shapes -----------------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\s*\{")


def _balanced(text: str, start: int) -> str | None:
    """The text from `start` to the brace that closes the one just before it; None when it never closes."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, braces balanced; None when there is none."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    return _balanced(text, starts[-1]) if starts else None


def all_boxed(text: str) -> list[str]:
    """Contents of every outermost `\\boxed{...}` in `text`, in order, braces balanced; one left open ends the
    list."""
    contents, position = [], 0
    while (match := _BOXED.search(text, position)) is not None:
        content = _balanced(text, match.end())
        if content is None:
            break
        contents.append(content)
        position = match.end() + len(content) + 1
    return contents


def _native(r: dict) -> dict:
    # Parquet in QUERY_SCHEMA (`jobs.preprocess`'s `kept/`, `jobs.distill`'s `queries/`) holds these two as JSON text.
    return {k: json.loads(v) if k in ("reference", "metadata") and isinstance(v, str) else v for k, v in r.items()}


def gsm8k_solution(text: str) -> tuple[str, str]:
    """A GSM8K `answer` field split into (reasoning, final answer): the answer follows the last `####`, without
    thousands separators."""
    reasoning, answer = text.rsplit("####", 1)
    return reasoning, answer.strip().replace(",", "")


def _gsm8k(r: dict) -> dict:
    return {"category": "math", "prompt": r["question"], "reference": {"answer": gsm8k_solution(r["answer"])[1]}}


def _math_problem(r: dict) -> dict:
    answer = r.get("answer") or r.get("expected_answer")
    if answer is None:
        answer = last_boxed(r.get("solution", ""))
    if answer is None:
        raise ValueError("no answer field and no \\boxed{} in the solution")
    meta = {k: r[k] for k in ("level", "type", "subject", "url") if k in r}
    row_id = r.get("unique_id") or r.get("id")
    return {
        "id": str(row_id) if row_id is not None else "",
        "category": "math",
        "prompt": r["problem"],
        "reference": {"answer": str(answer)},
        "metadata": meta,
    }


def _mbpp(r: dict) -> dict:
    tests = list(r["test_list"])
    prompt = f"{r['text']}\nYour code should pass these tests:\n" + "\n".join(tests)
    return {
        "id": str(r["task_id"]),
        "category": "code",
        "prompt": prompt,
        "reference": {
            "language": "python",
            "tests": {"kind": "assert", "setup": r.get("test_setup_code") or "", "asserts": tests},
        },
    }


def _humaneval(r: dict) -> dict:
    return {
        "id": str(r["task_id"]).split("/")[-1],
        "category": "code",
        "prompt": "Complete the following Python function.\n\n" + r["prompt"],
        "reference": {
            "language": "python",
            "entry_point": r["entry_point"],
            "prompt_code": r["prompt"],
            "tests": {"kind": "assert", "setup": r["test"], "asserts": [f"check({r['entry_point']})"]},
        },
    }


def _stdio(r: dict) -> dict:
    cases = [{"input": c["input"], "output": c["output"]} for c in r["tests"]]
    return {
        "id": str(r["id"]),
        "category": "code",
        "prompt": r["question"],
        "reference": {"language": "python", "tests": {"kind": "stdio", "cases": cases}},
        "metadata": {"origin": r.get("source")} if r.get("source") else {},
    }


def _livecodebench(r: dict) -> dict:
    tests = r["public_test_cases"]
    tests = json.loads(tests) if isinstance(tests, str) else tests
    if any(t.get("testtype") != "stdin" for t in tests):
        raise ValueError("only stdin test cases are supported; this problem has functional tests")
    return {
        "id": str(r["question_id"]),
        "category": "code",
        "prompt": r["question_content"],
        "reference": {
            "language": "python",
            "tests": {"kind": "stdio", "cases": [{"input": t["input"], "output": t["output"]} for t in tests]},
        },
        "metadata": {k: r[k] for k in ("platform", "contest_date", "difficulty") if k in r},
    }


def _ifeval(r: dict) -> dict:
    instructions = [
        {"id": iid, "kwargs": {k: v for k, v in (kwargs or {}).items() if v is not None}}
        for iid, kwargs in zip(r["instruction_id_list"], r["kwargs"], strict=True)
    ]
    return {
        "id": str(r["key"]),
        "category": "instruction_following",
        "prompt": r["prompt"],
        "reference": {"instructions": instructions},
    }


def _mt_bench(r: dict) -> dict:
    reference = None
    if r.get("reference"):
        reference = {"answer": r["reference"][-1], "turn_answers": list(r["reference"])}
    return {
        "id": str(r["question_id"]),
        "category": "chat",
        "messages": [{"role": "user", "content": t} for t in r["turns"]],
        "reference": reference,
        "metadata": {"mt_bench_category": r.get("category")},
    }


def _arena_hard(r: dict) -> dict:
    prompt = r["prompt"] if isinstance(r.get("prompt"), str) else r["turns"][0]["content"]
    return {
        "id": str(r["uid"]),
        "category": "general",
        "prompt": prompt,
        "metadata": {"cluster": r.get("cluster")},
    }


def _arc(r: dict) -> dict:
    choices = "\n".join(f"{c['label']}. {c['text']}" for c in r["question"]["choices"])
    prompt = f"{r['question']['stem']}\n\n{choices}\n\nAnswer with the letter of the correct choice."
    return {"id": str(r["id"]), "category": "science", "prompt": prompt, "reference": {"answer": r["answerKey"]}}


def _is_native(r: dict) -> bool:
    return r.get("category") in {c.value for c in Category} and ("messages" in r or "prompt" in r)


# Order matters: the first shape whose predicate holds converts the row.
_SHAPES: list[tuple[str, Callable[[dict], bool], Callable[[dict], dict]]] = [
    ("native", _is_native, _native),
    ("humaneval", lambda r: {"task_id", "prompt", "entry_point", "test"} <= r.keys(), _humaneval),
    ("mbpp", lambda r: {"text", "task_id", "test_list"} <= r.keys(), _mbpp),
    ("livecodebench", lambda r: {"question_content", "public_test_cases"} <= r.keys(), _livecodebench),
    ("codenet", lambda r: {"question", "tests"} <= r.keys() and isinstance(r["tests"], list), _stdio),
    ("ifeval", lambda r: {"prompt", "instruction_id_list", "kwargs"} <= r.keys(), _ifeval),
    ("mt_bench", lambda r: {"question_id", "turns"} <= r.keys(), _mt_bench),
    ("arena_hard", lambda r: "uid" in r and ("prompt" in r or "turns" in r), _arena_hard),
    ("arc", lambda r: {"question", "answerKey"} <= r.keys() and isinstance(r["question"], dict), _arc),
    ("gsm8k", lambda r: {"question", "answer"} <= r.keys() and "####" in str(r["answer"]), _gsm8k),
    ("math", lambda r: "problem" in r and r.keys() & {"answer", "expected_answer", "solution"}, _math_problem),
]


# ---- files --------------------------------------------------------------------------------------------------------

_SUFFIXES = (".gz", ".jsonl", ".json", ".parquet")


def source_name(path: str) -> str:
    """`…/gsm8k_train.jsonl` → `gsm8k_train`: the default `source` of the rows a file holds."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def parsed_row(origin: str, result: Query | RowError) -> dict[str, Any]:
    """One row of the ingest stream: the query as a JSON row, or why there is none."""
    if isinstance(result, RowError):
        return {"origin": origin, "query": None, "reason": result.reason, "detail": result.detail, "raw": result.raw}
    return {"origin": origin, "query": json.dumps(result.to_row()), "reason": None, "detail": None, "raw": None}


class UnreadableFile(ValueError):
    """A gzipped file whose stream breaks partway (cut off while copying, corrupted): lines up to `line` were read,
    the rest cannot be."""

    def __init__(self, path: str, line: int, cause: Exception):
        super().__init__(f"{path}: the gzip stream breaks after line {line} ({cause}); the rest of the file is not "
                         "read: copy or compress it again")
        self.path, self.line = path, line

    def row(self) -> dict[str, Any]:
        """The rest of the file as one raw row (see `jsonl_lines`), so that a job reports it where it reports rows."""
        return {"origin": f"{self.path}:{self.line + 1}", "raw": b"", "source": source_name(self.path),
                "error": str(self)}


def jsonl_lines(path: str, data: bytes | BinaryIO, max_line_bytes: int | None = None) -> Iterator[dict[str, Any]]:
    """Every non-blank line of a JSONL file (gzipped or not), in order: its origin `path:line`, its bytes and the
    file's source name. The one way input files are split into rows, for every job. `data` is the file's bytes, or
    the file open for reading: it is then read a line at a time, so its size does not decide the memory taken.
    A line longer than `max_line_bytes` is never held whole: its first `max_line_bytes + 1` bytes stand for it (the
    row-size check rejects them) and the rest is skipped. Raises `UnreadableFile` after the last readable line of a
    broken gzip stream."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    if path.endswith(".gz"):
        stream = gzip.open(stream)
    elif not isinstance(stream, io.BufferedIOBase):
        stream = io.BufferedReader(stream)  # an fsspec file reads a line whole, however long: this reads it in parts
    source = source_name(path)
    limit = -1 if max_line_bytes is None else max_line_bytes + 1
    number = 0
    try:
        while line := stream.readline(limit):
            number += 1
            if line.strip():
                yield {"origin": f"{path}:{number}", "raw": line.removesuffix(b"\n"), "source": source}
            # Skipped after its row is out: a stream that breaks inside the long line still accounts for it.
            if len(line) == limit and not line.endswith(b"\n"):
                while (rest := stream.readline(_SKIP_BYTES)) and not rest.endswith(b"\n"):
                    pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        if not number:
            raise  # not gzip at all, or nothing readable: the file's own error says it best
        raise UnreadableFile(path, number, err) from err


def parse_raw_row(row: dict[str, Any], max_row_bytes: int = MAX_ROW_BYTES) -> Query | RowError:
    """A raw row (`jsonl_lines`, or a Parquet row as JSON) to a query; a row standing for the unreadable rest of a
    file (`UnreadableFile.row`) is that error."""
    if row.get("error"):
        return RowError("unreadable_file", row["error"], "")
    return parse_json_line(row["raw"], row["source"], max_row_bytes)


def parse_jsonl_file(path: str, data: bytes, max_row_bytes: int = MAX_ROW_BYTES) -> list[dict[str, Any]]:
    """Every non-blank line of a JSONL file, in order, as an ingest row whose origin is `path:line`."""
    return [
        parsed_row(line["origin"], parse_raw_row(line, max_row_bytes))
        for line in jsonl_lines(path, data, max_row_bytes)
    ]
