"""The regenerate loop, driven by scripted engines and verifiers: acceptance, retries, exhaustion, truncation, turns."""

import asyncio
import json

from pipeline.config import SamplingConfig, TeacherConfig
from pipeline.engine import Candidate, RequestFailed
from pipeline.regenerate import distill_query
from pipeline.schema import Message, Query
from pipeline.verifiers.base import Verdict

MATH = Query.model_validate({"id": "q1", "category": "math", "prompt": "2+2?", "reference": {"answer": "4"}})


def teacher(**overrides) -> TeacherConfig:
    base = {"name": "t", "model": "m", "response_format": "think_answer", "max_attempts": 3}
    return TeacherConfig.model_validate({**base, **overrides})


class ScriptedEngine:
    """Answers each request with the next scripted list of (text, finish_reason); records what it was asked."""

    def __init__(self, *rounds):
        self.rounds = list(rounds)
        self.requests: list[list[Message]] = []
        self.seeds: list[int | None] = []

    async def generate(self, messages, sampling: SamplingConfig):
        self.requests.append(messages)
        self.seeds.append(sampling.seed)
        return [Candidate(text, reason, 10, 5) for text, reason in self.rounds.pop(0)]


async def exact_verifier(query: Query, response: str) -> Verdict:
    ok = "<answer>4</answer>" in response
    return Verdict(1.0 if ok else 0.0, "exact/1", {}, None if ok else "wrong_answer")


def run(query, engine, verify=exact_verifier, **overrides):
    return asyncio.run(distill_query(query, teacher(**overrides), engine.generate, verify, "cfg"))


RIGHT = ("<think>2+2 is 4</think><answer>4</answer>", "stop")
WRONG = ("<think>2+2 is 5</think><answer>5</answer>", "stop")


def test_first_passing_candidate_is_accepted():
    outcome = run(MATH, ScriptedEngine([RIGHT]))
    sample = outcome.sample
    assert outcome.reject is None
    assert (sample.attempts, sample.verify_score, sample.think, sample.answer) == (1, 1.0, "2+2 is 4", "4")
    assert [m.role for m in sample.messages] == ["user", "assistant"]
    assert sample.messages[-1].content == "<think>\n2+2 is 4\n</think>\n<answer>\n4\n</answer>"
    assert sample.config_hash == "cfg" and sample.teacher == "t"


def test_failures_are_retried_until_one_passes():
    outcome = run(MATH, ScriptedEngine([WRONG], [WRONG], [RIGHT]))
    assert outcome.sample.attempts == 3
    assert [a.failure for a in outcome.attempts] == ["wrong_answer", "wrong_answer", None]


def test_exhaustion_after_max_attempts_is_a_reject_with_reasons():
    engine = ScriptedEngine([WRONG], [WRONG], [WRONG], [RIGHT])
    outcome = run(MATH, engine)
    assert outcome.sample is None
    assert (outcome.reject.reason, outcome.reject.attempts, outcome.reject.stage) == ("exhausted", 3, "distill")
    assert json.loads(outcome.reject.detail)["failures"] == {"wrong_answer": 3}
    assert len(engine.requests) == 3, "no generation past max_attempts"


def test_truncated_response_is_never_accepted_even_when_correct():
    outcome = run(MATH, ScriptedEngine([(RIGHT[0], "length")], [RIGHT]))
    assert outcome.attempts[0].failure == "truncated"
    assert outcome.sample.attempts == 2


def test_best_of_n_candidates_wins():
    async def graded(query, response):
        score = 0.95 if "<answer>a<" in response else 0.99
        return Verdict(score, "graded/1", {})

    engine = ScriptedEngine([("<think>x</think><answer>a</answer>", "stop"),
                             ("<think>x</think><answer>b</answer>", "stop")])
    outcome = run(MATH, engine, verify=graded)
    assert outcome.sample.answer == "b" and outcome.sample.verify_score == 0.99
    assert [a.candidate for a in outcome.attempts] == [0, 1]


def test_below_threshold_is_a_failure():
    async def lukewarm(query, response):
        return Verdict(0.5, "graded/1", {})

    outcome = run(MATH, ScriptedEngine([RIGHT]), verify=lukewarm, max_attempts=1)
    assert outcome.attempts[0].failure == "below_threshold"
    assert outcome.reject.best_score == 0.5


def test_request_refused_by_engine_is_rejected_without_retry():
    class Refusing:
        calls = 0

        async def generate(self, messages, sampling):
            self.calls += 1
            raise RequestFailed("prompt_too_long", "4000 tokens")

    engine = Refusing()
    outcome = run(MATH, engine)
    assert outcome.reject.reason == "prompt_too_long" and engine.calls == 1


def test_multi_turn_is_distilled_turn_by_turn_with_accepted_answers_in_context():
    chat = Query.model_validate(
        {"id": "mt", "category": "chat",
         "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "more"}]}
    )

    async def anything(query, response):
        return Verdict(1.0, "judge/1", {})

    engine = ScriptedEngine([("<think>t1</think><answer>a1</answer>", "stop")],
                            [("<think>t2</think><answer>a2</answer>", "stop")])
    outcome = run(chat, engine, verify=anything, system_prompt="")
    assert [m.role for m in outcome.sample.messages] == ["user", "assistant", "user", "assistant"]
    second_request = engine.requests[1]
    assert [m.role for m in second_request] == ["user", "assistant", "user"]
    assert "a1" in second_request[1].content
    assert [a.turn for a in outcome.attempts] == [0, 1]
    assert outcome.sample.answer == "a2" and outcome.sample.attempts == 2


def test_system_prompt_defaults_to_the_format_instructions():
    engine = ScriptedEngine([RIGHT])
    run(MATH, engine)
    assert engine.requests[0][0].role == "system" and "<answer>" in engine.requests[0][0].content


def test_seeded_retries_get_a_new_seed_each_round():
    engine = ScriptedEngine([WRONG], [WRONG], [RIGHT])
    run(MATH, engine, sampling={"default": {"seed": 7}})
    assert engine.seeds == [7, 8, 9]


class Flaky:
    """Fails the first requests with the given errors, then answers right."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    async def generate(self, messages, sampling):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [Candidate(*RIGHT, 10, 5)]


NO_WAIT = {"faults": {"backoff_s": 0.0}}


def test_a_retryable_failure_costs_a_round_and_is_logged_then_the_row_goes_on():
    engine = Flaky(RequestFailed("endpoint_error", "HTTP 503", retryable=True))
    outcome = run(MATH, engine, **NO_WAIT)
    assert outcome.sample is not None and outcome.sample.attempts == 2 and engine.calls == 2
    failed = outcome.attempts[0]
    assert (failed.failure, failed.finish_reason, failed.completion_tokens) == ("endpoint_error", "error", 0)
    assert "HTTP 503" in json.loads(failed.verify_details)["error"]


def test_a_row_whose_every_request_failed_is_rejected_with_the_fault_not_as_exhausted():
    timeout = RequestFailed("endpoint_timeout", "no answer in 1 s", retryable=True)
    outcome = run(MATH, Flaky(timeout, timeout, timeout), **NO_WAIT)
    assert (outcome.reject.reason, outcome.reject.attempts) == ("endpoint_timeout", 3)
    assert [a.failure for a in outcome.attempts] == ["endpoint_timeout"] * 3


def test_a_row_that_also_met_wrong_answers_is_exhausted():
    engine = ScriptedEngine([WRONG], [WRONG])
    flaky = Flaky(RequestFailed("endpoint_error", "HTTP 500", retryable=True))

    async def generate(messages, sampling):
        if flaky.errors:
            return await flaky.generate(messages, sampling)
        return await engine.generate(messages, sampling)

    outcome = asyncio.run(distill_query(MATH, teacher(**NO_WAIT), generate, exact_verifier, "cfg"))
    assert outcome.reject.reason == "exhausted"
    assert json.loads(outcome.reject.detail)["failures"] == {"endpoint_error": 1, "wrong_answer": 2}


def test_a_refused_request_is_final_at_once():
    engine = Flaky(RequestFailed("request_refused", "HTTP 400: too long", retryable=False))
    outcome = run(MATH, engine, **NO_WAIT)
    assert (outcome.reject.reason, engine.calls, len(outcome.attempts)) == ("request_refused", 1, 1)


def test_retries_back_off_exponentially_with_jitter_and_a_cap():
    from pipeline.config import FaultPolicy
    from pipeline.regenerate import backoff_s

    policy = FaultPolicy(backoff_s=1.0, backoff_max_s=5.0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        waits = [backoff_s(policy, failures) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)


def test_a_verifier_that_keeps_raising_rejects_the_row_as_verifier_error():
    async def broken(query, response):
        return Verdict(0.0, "error", {"error": "boom"}, failure="verifier_error")

    outcome = run(MATH, ScriptedEngine([RIGHT], [RIGHT], [RIGHT]), verify=broken)
    assert outcome.reject.reason == "verifier_error"
