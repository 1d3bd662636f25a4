"""Rows `jobs.verify` scores: a query plus `response`, or a candidate from a distill run's attempts log joined with
its query."""

import asyncio
import json

from pipeline.loaders import UnreadableFile
from pipeline.schema import Query
from pipeline.verifiers.audit import attempt_record, score_row
from pipeline.verifiers.base import Verdict

CHAT = Query(id="c1", category="chat", messages=[
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."},
    {"role": "user", "content": "And now?"},
]).to_row()


def logged(turn=0, text="<think>hm</think>hello", **query):
    return {"id": "c1", "teacher": "t", "attempt": 2, "candidate": 1, "turn": turn, "score": 0.4,
            "failure": "below_threshold", "text": text, **query}


def scored(record):
    async def verify(query, response):
        return Verdict(1.0, "echo", {"turns": [m.content for m in query.messages], "response": response})

    return asyncio.run(score_row(json.dumps(record).encode(), "o", "s", verify))


def test_a_candidate_is_scored_on_the_conversation_up_to_the_turn_it_answered():
    first, second = scored(attempt_record(logged(0, **CHAT))), scored(attempt_record(logged(1, **CHAT)))
    assert json.loads(first["verify_details"])["turns"] == ["Be brief.", "Hi."]
    assert json.loads(second["verify_details"])["turns"] == ["Be brief.", "Hi.", "And now?"]
    assert json.loads(first["verify_details"])["response"] == "<think>hm</think>hello"


def test_the_attempts_own_fields_travel_beside_the_query_not_inside_it():
    record = attempt_record(logged(0, **CHAT))
    assert record["attempt"] == {"teacher": "t", "attempt": 2, "candidate": 1, "turn": 0, "score": 0.4,
                                 "failure": "below_threshold"}
    assert scored(record)["verify_score"] == 1.0, "the query parses although the record has extra fields"


def test_a_failed_request_has_no_text_and_comes_back_as_missing_response():
    row = scored(attempt_record(logged(0, text=None, **CHAT)))
    assert row["verify_score"] == 0.0 and json.loads(row["verify_details"])["failure"] == "missing_response"


def test_a_candidate_whose_query_is_not_in_the_run_is_reported_not_dropped():
    row = scored(attempt_record(logged(0, **{k: None for k in CHAT if k != "id"})))
    assert row["verify_score"] == 0.0 and json.loads(row["verify_details"])["failure"] == "unknown_record_shape"


def test_the_unreadable_rest_of_a_gzip_file_comes_back_scored_zero_with_the_reason():
    async def verify(query, response):
        raise AssertionError("nothing to verify")

    rest = UnreadableFile("c.jsonl.gz", 7, EOFError("cut off")).row()
    out = asyncio.run(score_row(rest["raw"], rest["origin"], rest["source"], verify, rest["error"]))
    details = json.loads(out["verify_details"])
    assert (out["origin"], out["verify_score"], details["failure"]) == ("c.jsonl.gz:8", 0.0, "unreadable_file")
    assert "breaks after line 7" in details["detail"]
