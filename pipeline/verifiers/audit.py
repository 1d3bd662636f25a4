"""Scoring responses that already exist (`jobs.verify`): one input row in, the same row plus its verdict out.

An input row is a query in any format `pipeline.loaders` reads, plus `response`, the assistant's full text. A row
that cannot be read as one still comes out, with score 0 and the reason, so output and input line up one to one.

A distill run's attempts log is read the same way: each candidate joined with its query becomes such a row
(`attempt_record`), its own fields kept under `attempt`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.loaders import RowError, to_query
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

INPUT_VERIFIER = "input/1"
ATTEMPT_KEY = "attempt"  # an attempts-log row's own fields: kept in the output, not part of the query


async def score_row(
    raw: bytes, origin: str, source: str, verify: Callable[[Query, str], Awaitable[Verdict]],
    error: str | None = None,
) -> dict[str, Any]:
    """`raw` is one JSON object (a JSONL line or a Parquet row dumped to JSON); `verify` scores a full response.
    `error` is set when the row stands for the unreadable rest of a file (`pipeline.loaders.UnreadableFile`)."""
    if error:
        return _out(origin, None, _bad_row("unreadable_file", error, None))
    record: Any = None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        verdict = _bad_row("malformed_json", str(err), raw.decode("utf-8", errors="replace")[:2000])
        return _out(origin, None, verdict)
    if not isinstance(record, dict):
        return _out(origin, record, _bad_row("not_an_object", type(record).__name__, None))
    response = record.get("response")
    if not isinstance(response, str):
        return _out(origin, record, _bad_row("missing_response", "`response` must be a string", None))
    query = to_query({k: v for k, v in record.items() if k not in ("response", ATTEMPT_KEY)}, source)
    if isinstance(query, RowError):
        return _out(origin, record, _bad_row(query.reason, query.detail, None))
    return _out(origin, record, await verify(query, response))


def attempt_record(row: dict[str, Any]) -> dict[str, Any]:
    """An attempts-log row joined with its query (QUERY_SCHEMA columns, null when the run holds no such query) as a
    `score_row` record: the conversation up to the user turn the candidate answered, the candidate as `response`
    (null for a failed request, or a teacher that did not log text: such rows come back as `missing_response`).

    A later turn was generated after the answers the run accepted for the turns before it; those are not part of the
    query, so it is scored on the user's turns alone.
    """
    attempt = {key: row.get(key) for key in ("teacher", "attempt", "candidate", "turn", "score", "failure")}
    record: dict[str, Any] = {"id": row["id"], "response": row.get("text"), ATTEMPT_KEY: attempt}
    if row.get("category") is None:
        return record  # no query: `to_query` names what is missing
    messages, users = [], 0
    for message in row["messages"]:
        if message["role"] == "user":
            if users > (row["turn"] or 0):
                break
            users += 1
        messages.append(message)
    record.update(category=row["category"], messages=messages, reference=row["reference"], source=row["source"],
                  metadata=row["metadata"])
    return record


def _bad_row(reason: str, detail: str, raw: str | None) -> Verdict:
    details = {"failure": reason, "detail": detail}
    if raw is not None:
        details["raw"] = raw
    return Verdict(0.0, INPUT_VERIFIER, details, failure=reason)


def _out(origin: str, record: Any, verdict: Verdict) -> dict[str, Any]:
    details = {**verdict.details, "failure": verdict.failure}
    return {
        "origin": origin,
        "record": None if record is None else json.dumps(record, ensure_ascii=False),
        "verify_score": verdict.score,
        "verifier": verdict.verifier,
        "verify_details": json.dumps(details, ensure_ascii=False, default=str),
    }


def output_record(row: dict[str, Any]) -> dict[str, Any]:
    """The row users get back: their record (or where it came from, for an unreadable one) plus the verdict."""
    base = json.loads(row["record"]) if row["record"] is not None else {"origin": row["origin"]}
    if not isinstance(base, dict):
        base = {"origin": row["origin"], "value": base}
    return {**base, "verify_score": row["verify_score"], "verifier": row["verifier"],
            "verify_details": row["verify_details"]}
