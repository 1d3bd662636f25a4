"""Structure comes first: the format, then no runaway repetition."""

import pytest

from pipeline.verifiers.dispatch import check_structure_first
from pipeline.verifiers.structure import check_structure, repetition_failure

VARIED = " ".join(f"step {i} adds {i} to the total." for i in range(60))


@pytest.mark.parametrize(
    "text, failure",
    [
        pytest.param(VARIED, None, id="long-but-varied"),
        pytest.param("So 2 + 2 = 4.\n" * 5, "repetitive_lines", id="same-line-looping"),
        pytest.param("a\nb\na\nb\na\nb", None, id="alternating-lines"),
        pytest.param(" ".join(["we add the two numbers and then we check the result again carefully"] * 8),
                     "repetitive_ngram", id="phrase-loop"),
    ],
)
def test_repetition(text, failure):
    assert repetition_failure(text) == failure


def test_looping_reasoning_fails_even_with_an_answer():
    text = "<think>" + "Let me think.\n" * 6 + "</think><answer>4</answer>"
    assert check_structure(text, "think_answer").failure == "repetitive_lines"


def test_format_failures_come_through():
    assert check_structure("<think>x", "think_answer").failure == "missing_think_close"
    assert check_structure("<think>x</think><answer>4</answer>", "think_answer").ok


@pytest.mark.parametrize(
    "response, answer, failure",
    [
        pytest.param("17 + 25 = 42, so the answer is \\boxed{42}.", "17 + 25 = 42, so the answer is \\boxed{42}.",
                     None, id="untagged-answer-whole"),
        pytest.param("<think>17 + 25</think>\n\\boxed{42}", "\\boxed{42}", None, id="reasoning-taken-off"),
        pytest.param("So 42.\n" * 5, "", "repetitive_lines", id="a-looping-answer-still-fails"),
        pytest.param("<think>17 + 25 is", "", "missing_think_close", id="cut-off-in-its-reasoning"),
    ],
)
def test_answer_only_responses_reach_every_verifier_with_the_whole_text_as_the_answer(response, answer, failure):
    """`check_structure_first` is the gate of every route: the program checkers and the judge alike."""
    passed, broken = check_structure_first(response, "answer_only")
    assert passed == answer
    assert (broken.failure if broken else None) == failure
