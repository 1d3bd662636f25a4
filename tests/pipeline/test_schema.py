"""The query format: what users may write, and what they get back when they get it wrong; and the Parquet columns
each record is stored as."""

import pyarrow as pa
import pytest
from pydantic import BaseModel, ValidationError

from pipeline.schema import (
    ATTEMPT_SCHEMA, QUERY_SCHEMA, REJECT_SCHEMA, SAMPLE_SCHEMA, Attempt, Category, Query, Reject, Sample, arrow_schema,
)


def test_prompt_is_shorthand_for_one_user_message():
    query = Query.model_validate({"category": "math", "prompt": "1+1?", "reference": {"answer": "2"}})
    assert [m.model_dump() for m in query.messages] == [{"role": "user", "content": "1+1?"}]


def test_missing_id_is_derived_from_content_and_stable():
    a = Query.model_validate({"category": "chat", "prompt": "hello"})
    b = Query.model_validate({"category": "chat", "prompt": "hello"})
    c = Query.model_validate({"category": "chat", "prompt": "hello!"})
    assert a.id == b.id and a.id.startswith("q-")
    assert a.id != c.id


def test_given_id_is_kept():
    assert Query.model_validate({"id": "gsm8k-12", "category": "chat", "prompt": "x"}).id == "gsm8k-12"


@pytest.mark.parametrize(
    "row, field",
    [
        pytest.param({"category": "poetry", "prompt": "x"}, "category", id="unknown-category"),
        pytest.param({"category": "math", "prompt": "x"}, "reference", id="math-without-reference"),
        pytest.param({"category": "chat"}, "messages", id="no-prompt-or-messages"),
        pytest.param({"category": "chat", "prompt": "x", "messages": []}, "both", id="prompt-and-messages"),
        pytest.param({"category": "chat", "messages": [{"role": "assistant", "content": "x"}]}, "user",
                     id="ends-with-assistant"),
        pytest.param({"category": "chat", "prompt": "   "}, "empty", id="blank-prompt"),
        pytest.param(
            {"category": "code", "prompt": "x", "reference": {"tests": {"kind": "assert", "asserts": []}}},
            "asserts",
            id="code-without-tests",
        ),
        pytest.param({"category": "chat", "prompt": "x", "colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_invalid_queries_name_the_problem(row, field):
    with pytest.raises(ValidationError, match=field):
        Query.model_validate(row)


def test_multi_turn_chat_keeps_every_user_turn():
    query = Query.model_validate(
        {"category": "chat", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    )
    assert query.user_turns() == ["a", "b"]


def test_row_round_trip_through_arrow():
    query = Query.model_validate(
        {
            "id": "mbpp-3",
            "category": "code",
            "prompt": "write f",
            "reference": {"language": "python",
                          "tests": {"kind": "assert", "setup": "", "asserts": ["assert f(1) == 2"]}},
            "source": "mbpp",
            "metadata": {"k": 1},
        }
    )
    table = pa.Table.from_pylist([query.to_row()], schema=QUERY_SCHEMA)
    assert Query.from_row(table.to_pylist()[0]) == query
    assert query.category is Category.code


# What earlier versions wrote to Parquet: a record's derived schema must not drift from it, or runs written before
# could not be resumed or read.
STRING, INT32, INT64, FLOAT64 = pa.string(), pa.int32(), pa.int64(), pa.float64()
MESSAGES = pa.list_(pa.struct([("role", STRING), ("content", STRING)]))
STORED = {
    Query: [("id", STRING), ("category", STRING), ("messages", MESSAGES), ("reference", STRING),
            ("source", STRING), ("metadata", STRING)],
    Sample: [("id", STRING), ("category", STRING), ("teacher", STRING), ("messages", MESSAGES), ("think", STRING),
             ("answer", STRING), ("verify_score", FLOAT64), ("verifier", STRING), ("verify_details", STRING),
             ("attempts", INT32), ("prompt_tokens", INT64), ("completion_tokens", INT64), ("finish_reason", STRING),
             ("source", STRING), ("config_hash", STRING)],
    Attempt: [("id", STRING), ("teacher", STRING), ("attempt", INT32), ("candidate", INT32), ("turn", INT32),
              ("score", FLOAT64), ("verifier", STRING), ("verify_details", STRING), ("failure", STRING),
              ("prompt_tokens", INT64), ("completion_tokens", INT64), ("finish_reason", STRING),
              ("config_hash", STRING), ("text", STRING)],
    Reject: [("id", STRING), ("origin", STRING), ("stage", STRING), ("teacher", STRING), ("reason", STRING),
             ("detail", STRING), ("attempts", INT32), ("best_score", FLOAT64), ("raw", STRING),
             ("config_hash", STRING)],
}


@pytest.mark.parametrize("record", STORED, ids=lambda record: record.__name__)
def test_each_records_arrow_schema_is_derived_from_its_fields_as_stored_before(record):
    derived = {Query: QUERY_SCHEMA, Sample: SAMPLE_SCHEMA, Attempt: ATTEMPT_SCHEMA, Reject: REJECT_SCHEMA}[record]
    assert derived.equals(pa.schema(STORED[record])) and derived.equals(arrow_schema(record))


def test_a_field_with_no_arrow_type_is_named():
    class Odd(BaseModel):
        id: str
        when: set[int]

    with pytest.raises(TypeError, match="when: no Arrow type"):
        arrow_schema(Odd)
