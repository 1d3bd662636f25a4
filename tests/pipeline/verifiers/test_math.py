"""Math verification on real MATH500 data, and the hard time limit around Math-Verify."""

import json
import time

import pytest

from pipeline.loaders import last_boxed
from pipeline.schema import Query
from pipeline.verifiers.killable import CallTimedOut, KillableWorker
from pipeline.verifiers.math import MathVerifier
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout_s=10)
    yield v
    v.close()


@pytest.fixture(scope="module")
def math500():
    path = shared_file("benchmarks/math500.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def query(answer: str) -> Query:
    return Query.model_validate({"category": "math", "prompt": "p", "reference": {"answer": answer}})


def test_reference_solutions_verify_and_neighbours_do_not(verifier, math500):
    rows = math500[:60]
    accepted = [verifier.verify(query(r["answer"]), last_boxed(r["solution"]) and f"\\boxed{{{last_boxed(r['solution'])}}}").score for r in rows]
    assert sum(accepted) == len(rows)
    wrongly = [
        verifier.verify(query(row["answer"]), f"\\boxed{{{neighbour['answer']}}}").score
        for row, neighbour in zip(rows, rows[1:])
        if row["answer"] != neighbour["answer"]
    ]
    assert sum(wrongly) <= 1


@pytest.mark.parametrize(
    "gold, answer, score, failure",
    [
        pytest.param("\\frac{1}{2}", "so the answer is \\boxed{0.5}", 1.0, None, id="boxed-equivalent"),
        pytest.param("18", "She makes 18 dollars.", 1.0, None, id="plain-sentence"),
        pytest.param("18", "The answer is: 17", 0.0, "wrong_answer", id="wrong"),
        pytest.param("18", "", 0.0, "no_answer_extracted", id="empty"),
    ],
)
def test_answers(verifier, gold, answer, score, failure):
    verdict = verifier.verify(query(gold), answer)
    assert (verdict.score, verdict.failure) == (score, failure)
    assert verdict.verifier.startswith("math-verify/")


def test_hung_call_is_killed_at_the_wall_clock_limit_and_the_worker_recovers():
    worker = KillableWorker("time:sleep", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(CallTimedOut):
        worker.call(30)
    assert time.monotonic() - started < 5
    assert worker.call(0) is None, "a fresh child serves the next call"
    worker.close()
