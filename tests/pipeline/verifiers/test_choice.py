"""Multiple-choice science answers, on ARC-Challenge."""

import json

import pytest

from pipeline.loaders import to_query
from pipeline.verifiers.choice import ChoiceVerifier, extract_choice, is_choice_reference
from tests.conftest import shared_file


@pytest.mark.parametrize(
    "answer, letter",
    [
        pytest.param("\\boxed{B}", "B", id="boxed"),
        pytest.param("\\boxed{\\text{C}}", "C", id="boxed-text"),
        pytest.param("The answer is (D).", "D", id="answer-is"),
        pytest.param("Answer: a", "A", id="answer-colon-lowercase"),
        pytest.param("B", "B", id="lone-letter"),
        pytest.param("C. Record the details", "C", id="letter-with-choice-text"),
        pytest.param("The answer is 3.", "3", id="digit-label"),
        pytest.param("I am not sure.", None, id="none"),
    ],
)
def test_extract_choice(answer, letter):
    assert extract_choice(answer) == letter


def test_arc_gold_labels_pass_and_others_fail():
    path = shared_file("queries/arc_challenge_dev.jsonl")
    verifier = ChoiceVerifier()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        query = to_query(row, "arc")
        assert is_choice_reference(query)
        assert verifier.verify(query, f"The answer is {row['answerKey']}.").score == 1.0
        wrong = next(c["label"] for c in row["question"]["choices"] if c["label"] != row["answerKey"])
        assert verifier.verify(query, f"The answer is {wrong}.").failure == "wrong_answer"
