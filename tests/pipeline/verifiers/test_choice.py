"""Multiple-choice science answers: the label an answer commits to, the hedges that commit to none, and ARC."""

import json

import pytest

from pipeline.loaders import to_query
from pipeline.verifiers.choice import ChoiceVerifier, extract_choice, is_choice_reference
from tests.conftest import shared_file

RECORD = "Record the details of the investigation."


@pytest.mark.parametrize(
    "answer, label",
    [
        # Boxed.
        pytest.param("\\boxed{D}", "D", id="boxed"),
        pytest.param("\\boxed{\\text{D}}", "D", id="boxed-text"),
        pytest.param("\\boxed{\\textbf{(C)}}", "C", id="boxed-bold-parenthesized"),
        pytest.param(f"\\boxed{{D. {RECORD}}}", "D", id="boxed-with-option-text"),
        pytest.param("So we get \\boxed{A}, and checking again, \\boxed{A}.", "A", id="boxed-twice-alike"),
        # Stated.
        pytest.param(f"The correct option is D: {RECORD}", "D", id="correct-option-is"),
        pytest.param("The correct answer is (D)", "D", id="correct-answer-is-parenthesized"),
        pytest.param("Answer: D", "D", id="answer-colon"),
        pytest.param("**Answer:** D", "D", id="answer-colon-bold"),
        pytest.param(f"The answer is **D. {RECORD}**", "D", id="answer-is-bold-with-text"),
        pytest.param("Answer: a", "A", id="answer-colon-lowercase"),
        pytest.param("the answer is (b).", "B", id="answer-is-lowercase-parenthesized"),
        pytest.param("The correct choice is 4", "4", id="digit-label"),
        pytest.param("The answer is 3.", "3", id="digit-label-sentence"),
        pytest.param(
            "Rolling the same objects from the same height lets them compare runs, and writing everything down lets "
            "anyone repeat it. Changing the ramp or the objects would start a new investigation, so the answer is D.",
            "D",
            id="answer-is-after-an-explanation",
        ),
        pytest.param("The answer is B, because plants need light.", "B", id="answer-then-reason"),
        pytest.param("The answer is D, not A or B.", "D", id="answer-then-exclusions"),
        pytest.param("The answer is D. Option A may be tempting, but it is wrong.", "D", id="answer-then-option-talk"),
        pytest.param("The answer is A. Wait, actually the answer is B.", "B", id="corrected-statement-last-wins"),
        # Leading.
        pytest.param("D", "D", id="lone-letter"),
        pytest.param("2", "2", id="lone-digit"),
        pytest.param("**D**", "D", id="bold"),
        pytest.param("**D.**", "D", id="bold-with-period"),
        pytest.param("Option D", "D", id="option-letter"),
        pytest.param(f"D. {RECORD}", "D", id="letter-period-text"),
        pytest.param(f"D) {RECORD}", "D", id="letter-paren-text"),
        pytest.param(f"(D) {RECORD}", "D", id="parenthesized-letter-text"),
        pytest.param("D is correct, since the details let them repeat it.", "D", id="letter-is-correct"),
        pytest.param("After comparing the options:\n\nC", "C", id="label-alone-on-last-line"),
        # Hedges: no answer.
        pytest.param("A or B", None, id="hedge-or"),
        pytest.param("either B or C", None, id="hedge-either-or"),
        pytest.param("B and C", None, id="hedge-and"),
        pytest.param("B/C", None, id="hedge-slash"),
        pytest.param("The answer is B, C", None, id="hedge-answer-is-list"),
        pytest.param("The answer is either B or C", None, id="hedge-answer-is-either-or"),
        pytest.param("\\boxed{B} or \\boxed{C}", None, id="hedge-two-boxes"),
        pytest.param("\\boxed{B or C}", None, id="hedge-or-in-a-box"),
        pytest.param("The answer is A. Actually, it could also be B", None, id="hedge-could-also-be-after"),
        pytest.param("\\boxed{D}. It could also be A.", None, id="hedge-could-also-be-after-box"),
        pytest.param("The answer is D, or possibly B.", None, id="hedge-or-possibly"),
        pytest.param(f"A. Put the objects in groups.\nB. Change the height.\nD. {RECORD}", None, id="options-listed"),
        # Prose: no stray capital is a label.
        pytest.param("I think A is wrong", None, id="prose-letter-is-wrong"),
        pytest.param("Let X be the distance the ball rolls.", None, id="prose-let-x"),
        pytest.param("The answer is B. I think that is right.", "B", id="prose-pronoun-after-answer"),
        pytest.param("the answer is a bit unclear", None, id="prose-article-a"),
        pytest.param("The answer is 3.5 meters", None, id="prose-number"),
        pytest.param("I am not sure.", None, id="prose-no-label"),
    ],
)
def test_extract_choice(answer, label):
    assert extract_choice(answer) == label


@pytest.mark.parametrize(
    "answer, score, failure",
    [
        pytest.param("The correct option is D: Record the details.", 1.0, None, id="right"),
        pytest.param("The correct option is B.", 0.0, "wrong_answer", id="wrong"),
        pytest.param("The answer is C or D.", 0.0, "no_answer_extracted", id="hedge"),
    ],
)
def test_verdicts(answer, score, failure):
    query = to_query({"question": {"stem": "?", "choices": []}, "answerKey": "D", "id": "q"}, "arc")
    verdict = ChoiceVerifier().verify(query, answer)
    assert (verdict.score, verdict.failure) == (score, failure)


def test_arc_gold_labels_pass_and_others_fail():
    path = shared_file("queries/arc_challenge_dev.jsonl")
    verifier = ChoiceVerifier()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        query = to_query(row, "arc")
        assert is_choice_reference(query)
        assert verifier.verify(query, f"The answer is {row['answerKey']}.").score == 1.0
        wrong = next(c for c in row["question"]["choices"] if c["label"] != row["answerKey"])
        assert verifier.verify(query, f"{wrong['label']}. {wrong['text']}").failure == "wrong_answer"
