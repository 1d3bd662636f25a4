"""The LLM judge: a model grades answers that no program can check (free-form science, chat, general).

Free of Ray and vLLM: `judge_answer` receives a `generate` coroutine, so the judge actors (any engine that
implements `pipeline.engine.Engine`) and the tests drive the same logic. The judge sees the conversation, the
reference answer when the query has one, and the answer part of the response (never the reasoning: the paper's
students are judged on what they answer). It must end with "Score: N" (0 to 10); a reply without a parseable score
is asked again, up to `max_retries` times, and then recorded as `judge_unparseable`. A judge request that fails
retryably (timeout, 5xx) is tried again within the same budget after a short wait; one that still fails records
`judge_` and the request's reason, which the regenerate loop counts as a fault rather than a wrong answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from pipeline.config import SamplingConfig
from pipeline.engine import Candidate, RequestFailed
from pipeline.schema import Message, Query
from pipeline.verifiers.base import Verdict

SCALE = 10
JUDGE_VERIFIER = "llm-judge/1"
_PREVIEW = 2000

RUBRIC = f"""You grade an AI assistant's answer to the user's last message.
Judge correctness first, then helpfulness, completeness and clarity. If a reference answer is given, an answer that \
contradicts it is wrong. A wrong, evasive or empty answer gets 0 to 3; a correct but incomplete or unclear answer \
gets 4 to 7; only a correct, complete and clear answer gets 8 to {SCALE}.
Explain your grade in a few sentences, then end with a last line of the form "Score: N", where N is an integer from \
0 to {SCALE}."""

# Judges write the score in many ways: "Score: 8", "**Score:** 8/10", "Rating: [[8]]", "8 out of 10". The last
# score-like expression wins, and a range ("a score of 0 to 10") is the scale, not a grade.
_SCORE_PATTERNS = [
    re.compile(
        r"(?:score|rating|grade)\s*\**\s*(?:[:=]|of|is)?\s*\**\s*\[*\s*(\d+(?:\.\d+)?)(?!\s*(?:to|-|–)\s*\d)"
        r"\s*\]*\s*(?:/\s*(\d+)|out\s+of\s+(\d+))?",
        re.IGNORECASE,
    ),
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]()()"),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/\s*(\d+)|out\s+of\s+(\d+))()", re.IGNORECASE),
]

GenerateFn = Callable[[list[Message], SamplingConfig], Awaitable[list[Candidate]]]


def judge_messages(query: Query, answer: str) -> list[Message]:
    """The rubric, then one user message that lays out the conversation, the reference and the answer to grade."""
    turns = [m for m in query.messages if m.role != "system"]
    conversation = "\n\n".join(f"[{m.role}]\n{m.content}" for m in turns)
    parts = [f"<conversation>\n{conversation}\n</conversation>"]
    reference = _reference_for_turn(query)
    if reference:
        parts.append(f"<reference_answer>\n{reference}\n</reference_answer>")
    parts.append(f"<answer_to_grade>\n{answer}\n</answer_to_grade>")
    parts.append(f'Grade the answer. End with "Score: N" (0 to {SCALE}).')
    return [Message(role="system", content=RUBRIC), Message(role="user", content="\n\n".join(parts))]


def _reference_for_turn(query: Query) -> str | None:
    """Multi-turn queries (MT-Bench) carry one reference per user turn; the judged turn is the last one so far."""
    reference = query.reference or {}
    per_turn = reference.get("turn_answers")
    if per_turn:
        turn = sum(m.role == "user" for m in query.messages) - 1
        return per_turn[turn] if 0 <= turn < len(per_turn) else None
    return reference.get("answer")


def parse_score(text: str) -> float | None:
    """The judge's grade scaled to [0, 1], or None when the reply holds no grade on a known scale."""
    best: tuple[int, float] | None = None  # (position, score): the last grade in the text wins
    for pattern in _SCORE_PATTERNS:
        for match in pattern.finditer(text):
            value = float(match.group(1))
            scale = float(match.group(2) or match.group(3) or SCALE)
            if scale <= 0 or not 0 <= value <= scale:
                continue
            if best is None or match.start() > best[0]:
                best = (match.start(), value / scale)
        if best is not None:
            return best[1]  # patterns are tried from most to least explicit
    return None


async def judge_answer(
    query: Query, answer: str, generate: GenerateFn, sampling: SamplingConfig, max_retries: int
) -> Verdict:
    replies: list[str] = []
    messages = judge_messages(query, answer)
    for attempt in range(max_retries + 1):
        try:
            [reply] = await generate(messages, _for_attempt(sampling, attempt))
        except RequestFailed as err:
            if err.retryable and attempt < max_retries:
                await asyncio.sleep(2**attempt)
                continue
            return Verdict(0.0, JUDGE_VERIFIER, {"error": str(err), "replies": replies}, failure=f"judge_{err.reason}")
        replies.append(reply.text[-_PREVIEW:])
        score = parse_score(reply.text) if reply.finish_reason != "length" else None
        if score is not None:
            return Verdict(score, JUDGE_VERIFIER, {"judge_score": score * SCALE, "judge_reply": replies[-1],
                                                   "judge_attempts": attempt + 1})
    return Verdict(0.0, JUDGE_VERIFIER, {"replies": replies, "judge_attempts": len(replies)},
                   failure="judge_unparseable")


def _for_attempt(sampling: SamplingConfig, attempt: int) -> SamplingConfig:
    """A greedy judge would repeat an unparseable reply word for word: retries sample, with a fresh seed."""
    update: dict = {"n": 1}
    if attempt:
        update["temperature"] = max(sampling.temperature, 0.7)
        if sampling.seed is not None:
            update["seed"] = sampling.seed + attempt
    return sampling.model_copy(update=update)
