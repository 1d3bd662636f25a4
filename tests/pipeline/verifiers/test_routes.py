"""The route table: (category, reference shape, what the run has) → the verifier that scores the query, or none
with its reason. Every other decision about verifiers derives from this one."""

import pytest

from pipeline.schema import Query
from pipeline.verifiers.routes import Available, Route, route

EVERYTHING = Available(judge=True, code=True)
NO_JUDGE = Available(judge=False, code=True)
NO_CODE = Available(judge=True, code=False)

ASSERTS = {"kind": "assert", "asserts": ["assert f(1) == 2"]}
STDIO = {"kind": "stdio", "cases": [{"input": "1\n", "output": "2\n"}]}


def query(category: str, reference: dict | None) -> Query:
    return Query.model_validate({"category": category, "prompt": "?", "reference": reference})


@pytest.mark.parametrize(
    "category, reference, available, expected_route, expected_reason",
    [
        pytest.param("math", {"answer": "2"}, NO_JUDGE, Route.math, None, id="math"),
        pytest.param("code", {"tests": ASSERTS}, NO_JUDGE, Route.code, None, id="python-asserts"),
        pytest.param("code", {"tests": STDIO}, NO_JUDGE, Route.code, None, id="python-stdio"),
        pytest.param("code", {"language": "cpp", "tests": STDIO}, NO_JUDGE, Route.code, None, id="cpp-stdio"),
        pytest.param("code", {"language": "cpp", "tests": ASSERTS}, EVERYTHING, None, "unsupported_tests",
                     id="cpp-asserts"),
        pytest.param("code", {"tests": {"kind": "assert", "asserts": ["assert f(1) = 2"]}}, EVERYTHING, None,
                     "unusable_tests", id="asserts-that-do-not-parse"),
        pytest.param("code", {"tests": ASSERTS}, NO_CODE, None, "code_verification_disabled", id="code-disabled"),
        pytest.param("instruction_following", {"instructions": [{"id": "punctuation:no_comma"}]}, NO_JUDGE,
                     Route.instructions, None, id="ifeval"),
        pytest.param("instruction_following",
                     {"instructions": [{"id": "punctuation:no_comma"}, {"id": "made:up_constraint"}]}, EVERYTHING,
                     None, "unknown_instruction", id="unknown-instruction"),
        pytest.param("science", {"answer": "B"}, NO_JUDGE, Route.choice, None, id="science-choice-letter"),
        pytest.param("science", {"answer": "3"}, NO_JUDGE, Route.choice, None, id="science-choice-digit"),
        pytest.param("science", {"answer": "Osmosis moves water"}, EVERYTHING, Route.judge, None,
                     id="science-free-form"),
        pytest.param("science", None, NO_JUDGE, None, "no_judge_configured", id="science-free-form-no-judge"),
        pytest.param("chat", None, EVERYTHING, Route.judge, None, id="chat"),
        pytest.param("chat", {"answer": "Hello"}, NO_JUDGE, None, "no_judge_configured", id="chat-no-judge"),
        pytest.param("general", None, EVERYTHING, Route.judge, None, id="general"),
        pytest.param("general", None, NO_JUDGE, None, "no_judge_configured", id="general-no-judge"),
    ],
)
def test_route(category, reference, available, expected_route, expected_reason):
    routing = route(query(category, reference), available)
    assert (routing.route, routing.reason) == (expected_route, expected_reason)
    assert (routing.reason is None) == (routing.route is not None)


def test_an_unknown_instruction_is_named_in_the_detail():
    reference = {"instructions": [{"id": "punctuation:no_comma"}, {"id": "made:up_constraint"}]}
    assert route(query("instruction_following", reference), EVERYTHING).detail == "made:up_constraint"
