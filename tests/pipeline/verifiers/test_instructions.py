"""Instruction following with the IFEval checkers, offline, on real IFEval prompts."""

import json

import pytest

from pipeline.loaders import to_query
from pipeline.schema import Query
from pipeline.verifiers.instructions import InstructionVerifier
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def verifier():
    return InstructionVerifier()


def ifeval_row(key: int) -> Query:
    path = shared_file("queries/ifeval_input_data.jsonl")
    row = next(json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["key"] == key)
    return to_query(row, "ifeval")


def constraint(instruction: str, **kwargs) -> Query:
    return Query.model_validate(
        {"category": "instruction_following", "prompt": "Write something.",
         "reference": {"instructions": [{"id": instruction, "kwargs": kwargs}]}}
    )


def test_ifeval_1000_met_and_broken(verifier):
    query = ifeval_row(1000)  # no commas; at least 3 highlighted sections; at least 300 words
    body = " ".join(f"word{i}" for i in range(320))
    meets = f"*Early life* {body} *Crusades* more text *Legacy* the end"
    verdict = verifier.verify(query, meets)
    assert verdict.score == 1.0, verdict.details
    breaks = meets.replace("word1 ", "word1, ")
    verdict = verifier.verify(query, breaks)
    assert verdict.score == pytest.approx(2 / 3)
    assert [i["followed"] for i in verdict.details["instructions"]] == [False, True, True]


@pytest.mark.parametrize(
    "instruction, kwargs, answer, followed",
    [
        pytest.param("change_case:english_lowercase", {}, "all lower case here", True, id="lowercase-met"),
        pytest.param("change_case:english_lowercase", {}, "Not all lower", False, id="lowercase-broken"),
        pytest.param("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
                     "One. Two.", True, id="sentences-met"),
        pytest.param("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
                     "Dr. Smith came. He left. Then it rained.", False, id="sentences-broken-abbreviation-aware"),
        pytest.param("detectable_format:json_format", {}, '{"a": 1}', True, id="json-met"),
        pytest.param("detectable_format:json_format", {}, "not json", False, id="json-broken"),
        pytest.param("startend:end_checker", {"end_phrase": "Is there anything else?"},
                     "Done. Is there anything else?", True, id="end-phrase"),
    ],
)
def test_single_constraints(verifier, instruction, kwargs, answer, followed):
    assert (verifier.verify(constraint(instruction, **kwargs), answer).score == 1.0) is followed


def test_unknown_instruction_is_not_followed(verifier):
    verdict = verifier.verify(constraint("made_up:thing"), "anything")
    assert verdict.score == 0.0 and verdict.details["instructions"][0]["error"] == "unknown_instruction"


def test_every_shared_ifeval_instruction_builds(verifier):
    path = shared_file("queries/ifeval_input_data.jsonl")
    for line in path.read_text().splitlines()[:200]:
        query = to_query(json.loads(line), "ifeval")
        verdict = verifier.verify(query, "A short answer.")
        assert 0.0 <= verdict.score <= 1.0
        assert all("error" not in i for i in verdict.details["instructions"]), query.id
