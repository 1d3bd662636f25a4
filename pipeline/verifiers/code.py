"""Code answers: the answer's last code block runs against the reference tests in the sandbox.

Score = fraction of tests passed (at most `max_tests` of them, as the paper caps at 10); a test passes on what the
program computes, never on how it exits. Python assert tests run one test statement per run, through the harness
(`pipeline.verifiers.harness`): the assertions are rewritten to report their operands as plain values, and are
judged again here, outside the sandbox. Stdin/stdout tests compare the output, after normalizing whitespace (or,
where the reference says `output_match: livecodebench`, line by line as LiveCodeBench does), and need a clean exit.
C++ (stdin/stdout only): compiled once with g++ inside the sandbox, then the binary runs once per test, in a fresh
sandbox each time.
"""

from __future__ import annotations

import ast
import base64
import re
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.schema import AssertTests, CodeReference, Query, StdioTests
from pipeline.verifiers.base import Verdict
from pipeline.verifiers.harness import holds, thaw
from pipeline.verifiers.sandbox import REPORT_FD, Limits, RunResult, Sandbox

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
# The harness, with a private copy of the builtins bound before it defines anything (see its module docstring).
_HARNESS = "import builtins as _b\n__builtins__ = dict(_b.__dict__)\ndel _b\n" + (
    Path(__file__).with_name("harness.py").read_text()
)


def extract_program(answer: str, language: str = "python") -> str | None:
    """The last fenced block labelled for `language` (or unlabelled); None when there is none."""
    blocks = [body for label, body in _FENCE.findall(answer) if label.lower() in _LABELS[language]]
    return blocks[-1] if blocks else None


def same_output(actual: bytes, expected: str) -> bool:
    return actual.decode("utf-8", errors="replace").split() == expected.split()


def same_output_lines(actual: bytes, expected: str) -> bool:
    """LiveCodeBench's comparison (`grade_stdio`): the same number of lines, stripped, each equal, or both made of
    the same decimal numbers ("0.50" matches "0.5", "1e3" matches "1000"; numbers are compared exactly, with no
    float tolerance, so 50000000000000000 never matches 50000000000000001)."""
    produced = actual.decode("utf-8", errors="replace").strip().split("\n")
    wanted = expected.strip().split("\n")
    return len(produced) == len(wanted) and all(_same_line(line, gold) for line, gold in zip(produced, wanted))


def _same_line(line: str, gold: str) -> bool:
    if line.strip() == gold.strip():
        return True
    numbers = _decimals(line)
    return numbers is not None and numbers == _decimals(gold)


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except InvalidOperation:
        return None


_OUTPUT_MATCH = {"tokens": same_output, "livecodebench": same_output_lines}


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
            setup = instrument(tests.setup)
            outcomes = [self._assert(setup, program, instrument(s)) for s in tests.asserts[: self._max_tests]]
        else:
            assert isinstance(tests, StdioTests)
            match = _OUTPUT_MATCH[reference.output_match]
            outcomes = [self._stdio(program, case.input, case.output, match)
                        for case in tests.cases[: self._max_tests]]
        passed = sum(o["passed"] for o in outcomes)
        score = passed / len(outcomes)
        details = {"tests": outcomes, "passed": passed, "total": len(outcomes)}
        return Verdict(score, self.name, details, failure=None if passed == len(outcomes) else "tests_failed")

    def _assert(self, setup: str, program: str, statement: str) -> dict:
        token = secrets.token_hex(16)
        call = f"run_test({setup!r}, {program!r}, {statement!r}, {REPORT_FD}, {token!r})\n"
        run = self._sandbox.run(f"{_HARNESS}\n{call}")
        passed, reason = judge_report(run.report, token)
        return {**_outcome(run, passed), "reason": reason}

    def _stdio(self, program: str, stdin: str, expected: str, match=same_output) -> dict:
        run = self._sandbox.run(program, stdin.encode())
        return _outcome(run, run.ok and match(run.stdout, expected))

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


# ---- assert tests, outside the sandbox -------------------------------------------------------------------------


def instrument(source: str) -> str:
    """`source` with every `assert` turned into a `__check__` call that records its operands (see module doc)."""
    tree = _AssertRewriter().visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self):
        self._sites = 0

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        self._sites += 1
        op, operands = _split(node.test)
        call = ast.Call(ast.Name("__check__", ast.Load()), [ast.Constant(self._sites), op, *operands], [])
        return ast.copy_location(ast.Expr(call), node)


_OPERATORS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
              ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


def _split(test: ast.expr) -> tuple[ast.expr, list[ast.expr]]:
    """The operator an assertion applies and the operands it applies it to, so that the operator runs outside."""
    if isinstance(test, ast.Compare):
        ops = ast.Tuple([ast.Constant(_OPERATORS[type(o)]) for o in test.ops], ast.Load())
        return ops, [test.left, *test.comparators]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.Constant("not"), [test.operand]
    if isinstance(test, ast.Call) and _called_name(test.func) == "isclose" and len(test.args) == 2:
        keywords = {k.arg: k.value for k in test.keywords}
        rel_tol = keywords.get("rel_tol", ast.Constant(1e-09))
        abs_tol = keywords.get("abs_tol", ast.Constant(0.0))
        return ast.Constant("isclose"), [*test.args, rel_tol, abs_tol]
    return ast.Constant("truth"), [test]


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("math", "cmath"):
        return func.attr
    return None


def judge_report(report: bytes, token: str) -> tuple[bool, str | None]:
    """Whether an assert test passed, judged from the harness's records alone, and why not. It passed when the test
    statement ran to its end, reached at least one assertion, and every assertion holds when evaluated again here."""
    try:
        records = [ast.literal_eval(line) for line in report.decode("utf-8", "surrogatepass").splitlines()]
    except (ValueError, TypeError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return False, "unreadable_report"
    checked = 0
    for position, signed in enumerate(records):
        if not isinstance(signed, tuple) or len(signed) < 2 or signed[0] != token:
            return False, "forged_report"
        record = signed[1:]
        kind = record[0]
        if kind == "done" and position == len(records) - 1:
            return (True, None) if checked else (False, "no_assertion_reached")
        if kind == "bad" and len(record) == 3:
            return False, str(record[2])
        if kind == "error" and len(record) == 2:
            return False, "assertion_failed" if record[1] == "AssertionError" else f"raised_{record[1]}"[:80]
        if kind != "cmp" or len(record) < 4:
            return False, "unreadable_report"
        try:
            if not holds(record[2], [thaw(encoded) for encoded in record[3:]]):
                return False, "assertion_failed"
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError):
            return False, "assertion_failed"
        checked += 1
    return False, "ended_before_the_test"


def unusable_tests(reference: CodeReference) -> str | None:
    """Why the reference's tests cannot be run: assert tests that do not parse."""
    if not isinstance(reference.tests, AssertTests):
        return None
    for source in [reference.tests.setup, *reference.tests.asserts]:
        try:
            ast.parse(source)
        except (SyntaxError, ValueError) as err:
            return f"test code does not parse: {err}"[:200]
    return None
