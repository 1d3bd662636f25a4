"""Code answers: the last Python block of the answer runs against the reference tests in the sandbox.

Score = fraction of tests passed (at most `max_tests` of them, as the paper caps at 10). Assert tests run one
assert per run, after the reference's setup code and the candidate's program; stdin/stdout tests compare output
after normalizing whitespace.
"""

from __future__ import annotations

import re

from pipeline.schema import AssertTests, CodeReference, Query, StdioTests
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.sandbox import Limits, RunResult, Sandbox

_FENCE = re.compile(r"```[ \t]*(python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(answer: str) -> str | None:
    """The last fenced block labelled Python (or unlabelled); None when the answer has no code block."""
    blocks = [(label, body) for label, body in _FENCE.findall(answer)]
    return blocks[-1][1] if blocks else None


def same_output(actual: bytes, expected: str) -> bool:
    return actual.decode("utf-8", errors="replace").split() == expected.split()


class CodeVerifier:
    name = "code-sandbox/1"

    def __init__(self, max_tests: int = 10, limits: Limits = Limits()):
        self._max_tests = max_tests
        self._sandbox = Sandbox(limits)

    def verify(self, query: Query, answer: str) -> Verdict:
        reference = query.typed_reference()
        assert isinstance(reference, CodeReference)
        if reference.language != "python":
            return Verdict(0.0, self.name, {"language": reference.language}, failure="unsupported_language")
        program = extract_program(answer)
        if program is None:
            return Verdict(0.0, self.name, {}, failure="no_code_extracted")
        tests = reference.tests
        if isinstance(tests, AssertTests):
            outcomes = [self._assert(tests.setup, program, statement) for statement in tests.asserts[: self._max_tests]]
        else:
            assert isinstance(tests, StdioTests)
            outcomes = [self._stdio(program, case.input, case.output) for case in tests.cases[: self._max_tests]]
        passed = sum(o["passed"] for o in outcomes)
        score = passed / len(outcomes)
        details = {"tests": outcomes, "passed": passed, "total": len(outcomes)}
        return Verdict(score, self.name, details, failure=None if passed == len(outcomes) else "tests_failed")

    def _assert(self, setup: str, program: str, statement: str) -> dict:
        run = self._sandbox.run(f"{setup}\n{program}\n{statement}\n")
        return _outcome(run, run.ok)

    def _stdio(self, program: str, stdin: str, expected: str) -> dict:
        run = self._sandbox.run(program, stdin.encode())
        return _outcome(run, run.ok and same_output(run.stdout, expected))

    def close(self) -> None:
        self._sandbox.close()


def _outcome(run: RunResult, passed: bool) -> dict:
    return {
        "passed": passed,
        "exit_code": run.exit_code,
        "timed_out": run.timed_out,
        "output_truncated": run.output_truncated,
        "stderr": run.stderr[-300:].decode("utf-8", errors="replace"),
    }
