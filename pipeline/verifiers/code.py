"""Code answers: the answer's last code block runs against the reference tests in the sandbox.

Score = fraction of tests passed (at most `max_tests` of them, as the paper caps at 10). Python: assert tests run
one assert per run, after the reference's setup code and the candidate's program; stdin/stdout tests compare output
after normalizing whitespace. C++ (stdin/stdout only): compiled once with g++ inside the sandbox, then the binary
runs once per test, in a fresh sandbox each time.
"""

from __future__ import annotations

import base64
import re

from pipeline.schema import AssertTests, CodeReference, Query, StdioTests
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.sandbox import Limits, RunResult, Sandbox

_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[ \t]*\n(.*?)```", re.DOTALL)
_LABELS = {"python": {"", "python", "py", "python3"}, "cpp": {"", "cpp", "c++", "cc", "cxx"}}
_COMPILE_LIMITS = Limits(wall_s=60.0, cpu_s=60, memory_mb=2048, output_bytes=32 << 20, processes=32, disk_mb=64)

# Runs in the sandbox: compile main.cpp and print the binary, base64-encoded.
_COMPILE = """
import base64, os, sys
open("main.cpp", "wb").write(base64.b64decode({source!r}))
pid = os.fork()
if pid == 0:
    os.execv("/usr/bin/g++", ["g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"])
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
if status:
    sys.exit(status)
sys.stdout.write(base64.b64encode(open("main", "rb").read()).decode())
"""
# Runs in the sandbox: write the binary into the run's private directory and become it.
_EXEC = """
import base64, os
open("main", "wb").write(base64.b64decode({binary!r}))
os.chmod("main", 0o755)
os.execv("./main", ["./main"])
"""


def extract_program(answer: str, language: str = "python") -> str | None:
    """The last fenced block labelled for `language` (or unlabelled); None when there is none."""
    blocks = [body for label, body in _FENCE.findall(answer) if label.lower() in _LABELS[language]]
    return blocks[-1] if blocks else None


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
        tests = reference.tests
        if reference.language == "cpp" and not isinstance(tests, StdioTests):
            return Verdict(0.0, self.name, {"language": "cpp"}, failure="unsupported_tests")
        program = extract_program(answer, reference.language)
        if program is None:
            return Verdict(0.0, self.name, {"language": reference.language}, failure="no_code_extracted")
        if reference.language == "cpp":
            compiled = self._sandbox.run(_COMPILE.format(source=base64.b64encode(program.encode()).decode()),
                                         limits=_COMPILE_LIMITS)
            if not compiled.ok:
                details = {"compiler": compiled.stderr[-1000:].decode("utf-8", errors="replace")}
                return Verdict(0.0, self.name, details, failure="compile_error")
            program = _EXEC.format(binary=compiled.stdout.decode())
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
