"""Parsing teacher responses into (think, answer), per response format."""

from typing import get_args

import pytest

from pipeline.response_format import (
    FORMAT_INSTRUCTIONS,
    ResponseFormat,
    format_response,
    parse_response,
    with_reasoning,
)


@pytest.mark.parametrize(
    "text, fmt, think, answer, failure",
    [
        pytest.param("<think>a</think><answer>b</answer>", "think_answer", "a", "b", None, id="paper-format"),
        pytest.param("<think>\na\n</think>\n\n<answer> b </answer>\n", "think_answer", "a", "b", None, id="whitespace"),
        pytest.param("<think>a</think>b", "think_answer", "", "", "missing_answer", id="bare-answer"),
        pytest.param("<think>a</think><answer>b", "think_answer", "", "", "missing_answer_close", id="unclosed-answer"),
        pytest.param("<think>a", "think_answer", "", "", "missing_think_close", id="unclosed-think"),
        pytest.param("just text", "think_answer", "", "", "missing_think", id="no-tags"),
        pytest.param("", "think_answer", "", "", "missing_think", id="empty-response"),
        pytest.param("<think> </think><answer>b</answer>", "think_answer", "", "", "empty_think", id="empty-think"),
        pytest.param("<think>a</think><answer></answer>", "think_answer", "", "", "empty_answer", id="empty-answer"),
        pytest.param("<think>a</think>\nThe answer is 4", "think_then_answer", "a", "The answer is 4", None,
                     id="r1-style"),
        pytest.param("step 1\nstep 2\nThe answer is 4", "plain", "step 1\nstep 2", "The answer is 4", None, id="plain"),
        pytest.param("4", "plain", "", "", "empty_think", id="plain-one-line"),
        pytest.param(
            "I loop.\n```python\ndef f():\n    pass\n```\nDone.", "plain",
            "I loop.", "```python\ndef f():\n    pass\n```\nDone.", None, id="plain-code-block",
        ),
        pytest.param("  \n ", "plain", "", "", "empty_response", id="plain-empty"),
        pytest.param("17 + 25 = 42.\nSo 42.", "answer_only", "", "17 + 25 = 42.\nSo 42.", None, id="answer-only"),
        pytest.param("42", "answer_only", "", "42", None, id="answer-only-one-line"),
        pytest.param("<think>add</think>\n42", "answer_only", "add", "42", None, id="answer-only-think-taken-off"),
        pytest.param("<think>add</think><answer>42</answer>", "answer_only", "add", "42", None,
                     id="answer-only-reads-the-paper-format"),
        pytest.param("<think></think>42", "answer_only", "", "42", None, id="answer-only-empty-think-is-fine"),
        pytest.param("<think>add, then", "answer_only", "", "", "missing_think_close", id="answer-only-cut-off"),
        pytest.param("<think>add</think>", "answer_only", "", "", "empty_answer", id="answer-only-no-answer"),
        pytest.param(" \n", "answer_only", "", "", "empty_response", id="answer-only-empty"),
    ],
)
def test_parse_response(text, fmt, think, answer, failure):
    parsed = parse_response(text, fmt)
    assert parsed.failure == failure
    if failure is None:
        assert (parsed.think, parsed.answer) == (think, answer)


def test_every_format_has_an_instruction_for_teachers():
    assert set(FORMAT_INSTRUCTIONS) == set(get_args(ResponseFormat))


def test_canonical_format_parses_back():
    text = format_response("reasoning", "\\boxed{4}")
    parsed = parse_response(text, "think_answer")
    assert (parsed.think, parsed.answer, parsed.failure) == ("reasoning", "\\boxed{4}", None)


@pytest.mark.parametrize(
    "reasoning, content, source, text",
    [
        ("2 plus 3 is 5.", "5", "auto", "<think>2 plus 3 is 5.</think>\n5"),
        (None, "<think>2 plus 3 is 5.</think>\n5", "auto", "<think>2 plus 3 is 5.</think>\n5"),
        ("", "<think>own</think>\n5", "auto", "<think>own</think>\n5"),
        ("2 plus 3 is 5.", "5", "field", "<think>2 plus 3 is 5.</think>\n5"),
        (None, "<think>own</think>\n5", "field", "<think></think>\n<think>own</think>\n5"),
        ("ignored", "<think>own</think>\n5", "tags", "<think>own</think>\n5"),
    ],
    ids=["auto-field", "auto-tags", "auto-empty-field-falls-back", "field", "field-missing", "tags-ignore-field"],
)
def test_reasoning_is_put_in_front_of_the_content(reasoning, content, source, text):
    assert with_reasoning(reasoning, content, source) == text
