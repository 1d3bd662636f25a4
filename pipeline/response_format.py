"""The paper's response format, `<think>…</think>` then `<answer>…</answer>`, in one place.

Teachers answer in different shapes: AM-Thinking-v1 writes both tags (`think_answer`); DeepSeek-R1 and Qwen3 write
`<think>…</think>` followed by a bare answer (`think_then_answer`); a plain instruct model such as the embedded
SmolLM2 writes neither (`plain`): its last code block and what follows it, or else its last non-empty line, is
taken as the answer, and what precedes it as the reasoning. `answer_only` is for scoring systems that show no
reasoning (`jobs.verify`): the whole response is the answer, no reasoning is required, and a leading
`<think>…</think>` (or an `<answer>` wrapper) is taken off. `parse_response` maps each configured shape onto
(think, answer), and `format_response` writes the canonical assistant turn that samples store. Parsing never raises
on model output: a malformed response comes back with a reason code.

Reasoning served apart from the answer (DeepSeek's `reasoning_content`, vLLM's `--reasoning-parser`) is folded back
into the text by `with_reasoning`, so every engine hands the parser one string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ResponseFormat = Literal["think_answer", "think_then_answer", "plain", "answer_only"]
ReasoningSource = Literal["auto", "field", "tags"]

_THINK = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*(?P<rest>.*)$", re.DOTALL)
_ANSWER = re.compile(r"^<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)


@dataclass(frozen=True)
class ParsedResponse:
    think: str
    answer: str
    failure: str | None  # snake_case reason when the response is not in the format

    @property
    def ok(self) -> bool:
        return self.failure is None


def parse_response(text: str, response_format: ResponseFormat = "think_answer") -> ParsedResponse:
    if response_format == "plain":
        return _parse_plain(text)
    if response_format == "answer_only":
        return _parse_answer_only(text)
    match = _THINK.match(text)
    if match is None:
        reason = "missing_think_close" if "<think>" in text else "missing_think"
        return ParsedResponse("", "", reason)
    think, rest = match["think"].strip(), match["rest"].strip()
    if not think:
        return ParsedResponse("", "", "empty_think")
    if response_format == "think_answer":
        answer_match = _ANSWER.match(rest)
        if answer_match is None:
            reason = "missing_answer_close" if "<answer>" in rest else "missing_answer"
            return ParsedResponse(think, "", reason)
        answer = answer_match["answer"].strip()
    else:
        answer = rest
    if not answer:
        return ParsedResponse(think, "", "empty_answer")
    return ParsedResponse(think, answer, None)


_LAST_CODE_BLOCK = re.compile(r"```[\w+#-]*[ \t]*\n.*?```(?!.*```)", re.DOTALL)


def _parse_plain(text: str) -> ParsedResponse:
    lines = text.strip().splitlines()
    if not lines:
        return ParsedResponse("", "", "empty_response")
    code = _LAST_CODE_BLOCK.search(text)
    if code is not None:
        think, answer = text[: code.start()].strip(), text[code.start() :].strip()
    else:
        think, answer = "\n".join(lines[:-1]).strip(), lines[-1].strip()
    if not think:
        return ParsedResponse("", answer, "empty_think")
    return ParsedResponse(think, answer, None)


def _parse_answer_only(text: str) -> ParsedResponse:
    match = _THINK.match(text)
    if match is not None:
        think, rest = match["think"].strip(), match["rest"].strip()
    elif text.lstrip().startswith("<think>"):
        return ParsedResponse("", "", "missing_think_close")  # cut off while reasoning: there is no answer
    else:
        think, rest = "", text.strip()
    wrapped = _ANSWER.match(rest)
    answer = wrapped["answer"].strip() if wrapped else rest
    if not answer:
        return ParsedResponse(think, "", "empty_answer" if match else "empty_response")
    return ParsedResponse(think, answer, None)


def format_response(think: str, answer: str) -> str:
    """The canonical assistant turn stored in samples, whatever shape the teacher wrote."""
    return f"<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>"


def with_reasoning(reasoning: str | None, content: str, source: ReasoningSource = "auto") -> str:
    """The teacher's text with reasoning served in a separate field put back as a leading `<think>…</think>`.

    `auto` uses the field when it holds text and the content as is (its own tags) otherwise; `field` trusts only the
    field, so a response without it comes back with an empty think (rejected as `empty_think`) even if the content
    has tags; `tags` ignores the field.
    """
    if source == "tags" or (source == "auto" and not reasoning):
        return content
    return f"<think>{reasoning or ''}</think>\n{content}"


FORMAT_INSTRUCTIONS: dict[str, str] = {
    "think_answer": (
        "First think step by step inside <think> and </think>. "
        "Then write the final answer inside <answer> and </answer>."
    ),
    "think_then_answer": "First think step by step inside <think> and </think>, then answer.",
    "plain": "Think step by step, then state the final answer alone on the last line.",
    "answer_only": "State the final answer.",
}
