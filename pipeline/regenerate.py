"""The verify-and-regenerate loop for one query and one teacher, free of Ray and vLLM.

It receives `generate` and `verify` coroutines, so the real engine, the simulated engine of the benchmark and the
tests all drive the same logic. A multi-turn query is distilled turn by turn: each user turn is answered given the
accepted answers to the turns before it. All turns share one budget of `max_attempts` generation rounds; each round
asks for `n` candidates and keeps the best one that passes. A candidate cut off at `max_tokens` never passes.

A request that fails uses its round too, and is logged as an attempt with its reason. A retryable failure waits out
a backoff and tries again; a refused one rejects the row at once. A row is rejected as `exhausted` when its rounds
ran out, or with the fault's own reason when faults are all that ever went wrong with it (every request failed, or
every verification raised), so that the summary tells an endpoint problem from a hard question.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.config import FaultPolicy, SamplingConfig, TeacherConfig
from pipeline.engine import REQUEST_FAILURES, Candidate, RequestFailed
from pipeline.response_format import FORMAT_INSTRUCTIONS, format_response, parse_response
from pipeline.schema import Attempt, Message, Query, Reject, Sample
from pipeline.verifiers.base import Verdict


GenerateFn = Callable[[list[Message], SamplingConfig], Awaitable[list[Candidate]]]
VerifyFn = Callable[[Query, str], Awaitable[Verdict]]

VERIFIER_ERROR = "verifier_error"  # the verifier raised: its fault, not the answer's
# What goes wrong with the machinery rather than the answer: the teacher's requests, the verifier, the judge's requests.
FAULTS = REQUEST_FAILURES | {VERIFIER_ERROR} | {f"judge_{reason}" for reason in REQUEST_FAILURES}


@dataclass(frozen=True)
class Outcome:
    sample: Sample | None
    reject: Reject | None
    attempts: list[Attempt]


def conversation_prefix(teacher: TeacherConfig, query: Query) -> list[Message]:
    """The teacher's system prompt (by default, the instructions of its response format), unless the query brings
    its own; an empty system prompt sends none."""
    prompt = FORMAT_INSTRUCTIONS[teacher.response_format] if teacher.system_prompt is None else teacher.system_prompt
    if prompt and not any(m.role == "system" for m in query.messages):
        return [Message(role="system", content=prompt)]
    return []


async def distill_query(
    query: Query, teacher: TeacherConfig, generate: GenerateFn, verify: VerifyFn, config_hash: str
) -> Outcome:
    sampling = teacher.sampling_for(query.category)
    history = conversation_prefix(teacher, query)
    attempts: list[Attempt] = []
    failures: Counter[str] = Counter()
    best_score = 0.0
    rounds = 0
    accepted: list[tuple[Candidate, Verdict, str, str]] = []  # per turn: candidate, verdict, think, answer
    turn_index = -1

    def reject(reason: str, detail: str) -> Outcome:
        return Outcome(
            None,
            Reject(
                id=query.id, origin=query.source or "", stage="distill", teacher=teacher.name, reason=reason,
                detail=detail, attempts=rounds, best_score=best_score, config_hash=config_hash,
            ),
            attempts,
        )

    async def failed_request(err: RequestFailed) -> Outcome | None:
        """Log the failed round; reject the row when the failure is final, else back off for the next round."""
        failures[err.reason] += 1
        attempts.append(
            Attempt(
                id=query.id, teacher=teacher.name, attempt=rounds, candidate=0, turn=turn_index, score=0.0,
                verifier="engine", verify_details=json.dumps({"error": str(err)}), failure=err.reason,
                prompt_tokens=0, completion_tokens=0, finish_reason="error", config_hash=config_hash,
            )
        )
        if not err.retryable:
            return reject(err.reason, str(err))
        await asyncio.sleep(backoff_s(teacher.faults, sum(failures[r] for r in REQUEST_FAILURES)))
        return None

    for message in query.messages:
        if message.role != "user":
            history.append(message)
            continue
        turn_index += 1
        history.append(message)
        turn_query = query.model_copy(update={"messages": list(history)})
        winner: tuple[Candidate, Verdict] | None = None
        while winner is None:
            if rounds == teacher.max_attempts:
                detail = json.dumps({"turn": turn_index, "failures": dict(failures)}, sort_keys=True)
                return reject(exhaustion_reason(failures), detail)
            rounds += 1
            try:
                candidates = await generate(list(history), _for_round(sampling, rounds))
            except RequestFailed as err:
                final = await failed_request(err)
                if final is not None:
                    return final
                continue
            verdicts = await asyncio.gather(*(_judge(c, turn_query, verify) for c in candidates))
            for index, (candidate, verdict) in enumerate(zip(candidates, verdicts)):
                passed = verdict.failure is None and verdict.score >= teacher.accept_threshold
                failure = None if passed else (verdict.failure or "below_threshold")
                if failure:
                    failures[failure] += 1
                best_score = max(best_score, verdict.score)
                attempts.append(
                    Attempt(
                        id=query.id, teacher=teacher.name, attempt=rounds, candidate=index, turn=turn_index,
                        score=verdict.score, verifier=verdict.verifier, verify_details=json.dumps(verdict.details),
                        failure=failure, prompt_tokens=candidate.prompt_tokens,
                        completion_tokens=candidate.completion_tokens, finish_reason=candidate.finish_reason,
                        config_hash=config_hash, text=candidate.text if teacher.log_text else None,
                    )
                )
                if passed and (winner is None or verdict.score > winner[1].score):
                    winner = (candidate, verdict)
        candidate, verdict = winner
        parsed = parse_response(candidate.text, teacher.response_format)
        history.append(Message(role="assistant", content=format_response(parsed.think, parsed.answer)))
        accepted.append((candidate, verdict, parsed.think, parsed.answer))

    last_candidate, last_verdict, think, answer = accepted[-1]
    sample = Sample(
        id=query.id,
        category=query.category,
        teacher=teacher.name,
        messages=[m for m in history if m.role != "system"],
        think=think,
        answer=answer,
        verify_score=min(v.score for _, v, _, _ in accepted),
        verifier=last_verdict.verifier,
        verify_details=json.dumps(last_verdict.details),
        attempts=rounds,
        prompt_tokens=sum(c.prompt_tokens for c, _, _, _ in accepted),
        completion_tokens=sum(c.completion_tokens for c, _, _, _ in accepted),
        finish_reason=last_candidate.finish_reason,
        source=query.source,
        config_hash=config_hash,
    )
    return Outcome(sample, None, attempts)


def exhaustion_reason(failures: Counter[str]) -> str:
    """`exhausted`, unless faults are all the row ever met: then the most frequent fault names it."""
    if failures and set(failures) <= FAULTS:
        return failures.most_common(1)[0][0]
    return "exhausted"


def backoff_s(policy: FaultPolicy, failures: int) -> float:
    """Exponential in the row's failures so far, capped, with jitter so that rows failed together do not retry in
    step (a throttling endpoint would see the same burst again)."""
    base = min(policy.backoff_max_s, policy.backoff_s * 2 ** max(failures - 1, 0))
    return base * random.uniform(0.5, 1.0)


def _for_round(sampling: SamplingConfig, round_number: int) -> SamplingConfig:
    """A seeded retry must not replay the candidates that just failed: each round gets its own seed."""
    if sampling.seed is None:
        return sampling
    return sampling.model_copy(update={"seed": sampling.seed + round_number - 1})


async def _judge(candidate: Candidate, query: Query, verify: VerifyFn) -> Verdict:
    if candidate.finish_reason == "length":
        return Verdict(0.0, "length", {"completion_tokens": candidate.completion_tokens}, failure="truncated")
    return await verify(query, candidate.text)
