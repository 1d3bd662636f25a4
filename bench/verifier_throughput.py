"""Benchmark: verifications per second per core, for each verifier, on real data (one process, one core).

    python -m bench.verifier_throughput
"""

import json
import time
from pathlib import Path

from pipeline.loaders import last_boxed, source_name, to_query
from pipeline.verifiers.choice import ChoiceVerifier
from pipeline.verifiers.code import CodeVerifier
from pipeline.verifiers.math import MathVerifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rows(relpath: str, count: int) -> list[dict]:
    return [json.loads(line) for line in (DATA / relpath).read_text().splitlines()[:count]]


def rate(verifier, cases) -> dict:
    started = time.perf_counter()
    passed = sum(verifier.verify(query, answer).score == 1.0 for query, answer in cases)
    seconds = time.perf_counter() - started
    return {"verifications": len(cases), "passed": passed, "per_s_per_core": round(len(cases) / seconds, 1)}


def main() -> None:
    math_cases = [(to_query(r, "math500"), f"\\boxed{{{last_boxed(r['solution'])}}}")
                  for r in rows("benchmarks/math500.jsonl", 200)]
    arc_cases = [(to_query(r, "arc"), f"The answer is {r['answerKey']}.")
                 for r in rows("queries/arc_challenge_dev.jsonl", 200)]
    mbpp = rows("queries/mbpp.jsonl", 60)
    code_cases = [(to_query(r, source_name("mbpp.jsonl")), f"```python\n{r['code']}\n```") for r in mbpp]
    math_verifier, code_verifier = MathVerifier(), CodeVerifier()
    math_verifier.verify(*math_cases[0])  # start the child process outside the timing
    results = {
        "math (Math-Verify, MATH500 gold)": rate(math_verifier, math_cases),
        "science multiple choice (ARC)": rate(ChoiceVerifier(), arc_cases),
        "code (MBPP canonical, 3 tests each)": rate(code_verifier, code_cases),
    }
    math_verifier.close()
    code_verifier.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
