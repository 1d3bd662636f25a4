"""The LLM judge's logic, driven by scripted judge replies: the prompt it sees, score parsing, retries, failures."""

import asyncio
import json

import pytest

from pipeline.config import SamplingConfig
from pipeline.engine import Candidate, RequestFailed
from pipeline.loaders import to_query
from pipeline.schema import Query
from pipeline.verifiers.judge import judge_answer, judge_messages, parse_score
from tests.conftest import shared_file

GENERAL = Query.model_validate({"id": "g1", "category": "general", "prompt": "Name a prime number above 10."})


@pytest.mark.parametrize(
    "reply, score",
    [
        ("The answer is right and clear.\nScore: 8", 0.8),
        ("**Score:** 10/10", 1.0),
        ("Rating: [[7]]", 0.7),
        ("I'd give it a score of 3.", 0.3),
        ("Overall 4 out of 5.", 0.8),
        ("Grade: 6 / 10", 0.6),
        ("On a scale from 0 to 10 it deserves... Score: 0", 0.0),
        ("First impression: score 9. On reflection the proof has a gap.\nScore: 5", 0.5),
    ],
)
def test_scores_are_read_whatever_way_the_judge_writes_them(reply, score):
    assert parse_score(reply) == pytest.approx(score)


@pytest.mark.parametrize(
    "reply", ["", "It is a good answer.", "Score: 14", "Score: N", "The answer 3/0 is odd", "Give a score of 0 to 10."]
)
def test_replies_without_a_grade_on_the_scale_have_no_score(reply):
    assert parse_score(reply) is None


def test_the_judge_sees_the_question_the_reference_and_the_answer_but_not_the_reasoning():
    query = Query.model_validate(
        {"id": "s1", "category": "science", "prompt": "Why is the sky blue?", "reference": {"answer": "Rayleigh"}}
    )
    system, user = judge_messages(query, "Because of Rayleigh scattering.")
    assert system.role == "system" and "Score: N" in system.content
    assert "Why is the sky blue?" in user.content
    assert "<reference_answer>\nRayleigh\n</reference_answer>" in user.content
    assert "Because of Rayleigh scattering." in user.content


def test_a_multi_turn_query_is_judged_against_the_reference_of_its_last_turn():
    rows = [json.loads(line) for line in shared_file("queries/mt_bench_questions.jsonl").read_text().splitlines()]
    query = to_query(next(row for row in rows if row.get("reference")), "mt_bench")
    first_turn = query.model_copy(update={"messages": query.messages[:1]})
    turn_answers = query.reference["turn_answers"]
    assert turn_answers[0] in judge_messages(first_turn, "x")[1].content
    assert turn_answers[1] in judge_messages(query, "x")[1].content


class ScriptedJudge:
    def __init__(self, *replies):
        self.replies = list(replies)
        self.sampling: list[SamplingConfig] = []

    async def generate(self, messages, sampling):
        self.sampling.append(sampling)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
        return [Candidate(text, finish, 100, 20)]


def judge(engine, retries=2, sampling=SamplingConfig(temperature=0.0, seed=7, n=4)):
    return asyncio.run(judge_answer(GENERAL, "11", engine.generate, sampling, retries))


def test_a_parsed_grade_becomes_the_score_with_the_reply_kept_as_evidence():
    verdict = judge(ScriptedJudge("11 is prime and above 10. Score: 9"))
    assert verdict.score == pytest.approx(0.9) and verdict.failure is None
    assert verdict.details["judge_reply"].endswith("Score: 9") and verdict.details["judge_attempts"] == 1


def test_an_unparseable_reply_is_retried_with_sampling_and_a_new_seed():
    engine = ScriptedJudge("Looks fine to me.", "Score: 7")
    verdict = judge(engine)
    assert verdict.score == pytest.approx(0.7) and verdict.details["judge_attempts"] == 2
    assert [s.n for s in engine.sampling] == [1, 1], "one judgement per request"
    assert [s.temperature for s in engine.sampling] == [0.0, 0.7]
    assert [s.seed for s in engine.sampling] == [7, 8]


def test_a_judge_cut_off_mid_reply_does_not_count_even_if_a_number_came_first():
    verdict = judge(ScriptedJudge(("Score: 10 because... and also", "length"), "Score: 2"))
    assert verdict.score == pytest.approx(0.2)


def test_after_the_retries_the_failure_is_recorded_with_every_reply():
    verdict = judge(ScriptedJudge("no idea", "still no idea", "nothing"), retries=2)
    assert verdict.score == 0.0 and verdict.failure == "judge_unparseable"
    assert verdict.details["replies"] == ["no idea", "still no idea", "nothing"]


def test_an_engine_refusal_is_recorded_as_a_judge_failure():
    verdict = judge(ScriptedJudge(RequestFailed("prompt_too_long", "5000 tokens")))
    assert verdict.failure == "judge_prompt_too_long" and verdict.score == 0.0


def test_a_passing_fault_of_the_judge_endpoint_is_retried_within_the_budget():
    verdict = judge(ScriptedJudge(RequestFailed("endpoint_error", "HTTP 503", retryable=True), "Score: 9"), retries=1)
    assert verdict.score == 0.9 and verdict.failure is None


def test_a_judge_endpoint_that_keeps_failing_is_a_fault_not_a_wrong_answer():
    from pipeline.regenerate import FAULTS

    timeout = RequestFailed("endpoint_timeout", "no answer", retryable=True)
    verdict = judge(ScriptedJudge(timeout, timeout), retries=1)
    assert verdict.failure == "judge_endpoint_timeout" and verdict.failure in FAULTS
