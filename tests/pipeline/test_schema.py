"""The query format: what users may write, and what they get back when they get it wrong."""

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.schema import QUERY_SCHEMA, Category, Query


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
        pytest.param({"category": "chat", "messages": [{"role": "assistant", "content": "x"}]}, "user", id="ends-with-assistant"),
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
            "reference": {"language": "python", "tests": {"kind": "assert", "setup": "", "asserts": ["assert f(1) == 2"]}},
            "source": "mbpp",
            "metadata": {"k": 1},
        }
    )
    table = pa.Table.from_pylist([query.to_row()], schema=QUERY_SCHEMA)
    assert Query.from_row(table.to_pylist()[0]) == query
    assert query.category is Category.code
