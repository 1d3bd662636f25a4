"""Math answers checked with Math-Verify against the gold answer, in a child process with a hard time limit."""

from __future__ import annotations

from importlib.metadata import version

from pipeline.loaders import last_boxed
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.killable import CallTimedOut, ChildCrashed, KillableWorker

_PREVIEW = 200


def check_answer(gold: str, answer: str) -> dict:
    """Runs in the child process: parse both sides and compare, gold first (Math-Verify is not symmetric)."""
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}")
    boxed = last_boxed(answer)
    candidate = f"\\boxed{{{boxed}}}" if boxed is not None else answer
    predicted = parse(candidate)
    if not predicted and boxed is None:
        predicted = parse(f"${answer}$")
    return {
        "gold_parsed": [str(x)[:_PREVIEW] for x in gold_parsed],
        "extracted": [str(x)[:_PREVIEW] for x in predicted],
        "correct": bool(gold_parsed and predicted and verify(gold_parsed, predicted)),
    }


class MathVerifier:
    name = f"math-verify/{version('math-verify')}"

    def __init__(self, timeout_s: float = 10.0):
        self._worker = KillableWorker("pipeline.verifiers.math:check_answer", timeout_s)

    def verify(self, query: Query, answer: str) -> Verdict:
        gold = query.reference["answer"] if query.reference else ""
        try:
            result = self._worker.call(gold, answer)
        except CallTimedOut as err:
            return Verdict(0.0, self.name, {"error": str(err)}, failure="verifier_timeout")
        except ChildCrashed as err:
            return Verdict(0.0, self.name, {"error": str(err)}, failure="verifier_crashed")
        if not result["extracted"]:
            return Verdict(0.0, self.name, result, failure="no_answer_extracted")
        if not result["correct"]:
            return Verdict(0.0, self.name, result, failure="wrong_answer")
        return Verdict(1.0, self.name, result)

    def close(self) -> None:
        self._worker.close()
