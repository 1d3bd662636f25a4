"""Benchmark: verifications per second per core, for each verifier, on real data (one process, one core at a time).

    python -m bench.verifier_throughput

Math runs against a baseline measured in the same run, so that a loaded machine moves both: Math-Verify as
shipped, called directly (`verify(parse(gold), parse(answer))`) in a fresh process, with no child per check. Each
round starts the baseline and a verifier afresh and makes two passes over the answers with each, alternating: the
first pass pays for parser caches that are still cold, the second is a warm worker's rate. Medians over the rounds;
the ratio is the median of each round's ratio.
"""

import json
import statistics
import time
from pathlib import Path

from pipeline.loaders import last_boxed, source_name, to_query
from pipeline.schema import Query
from pipeline.verifiers.choice import ChoiceVerifier
from pipeline.verifiers.code import CodeVerifier
from pipeline.verifiers.killable import KillableWorker
from pipeline.verifiers.math import MathVerifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROUNDS = 5
PASSES = 2


def rows(relpath: str, count: int) -> list[dict]:
    return [json.loads(line) for line in (DATA / relpath).read_text().splitlines()[:count]]


def rate(verifier, cases) -> dict:
    started = time.perf_counter()
    passed = sum(verifier.verify(query, answer).score == 1.0 for query, answer in cases)
    seconds = time.perf_counter() - started
    return {"verifications": len(cases), "passed": passed, "per_s_per_core": round(len(cases) / seconds, 1)}


def direct_pass(pairs: list[tuple[str, str]]) -> float:
    """Runs in the baseline's process: Math-Verify called directly on (gold, answer) pairs; checks per second."""
    from math_verify import parse, verify

    started = time.perf_counter()
    for gold, answer in pairs:
        verify(parse(f"\\boxed{{{gold}}}"), parse(answer))
    return len(pairs) / (time.perf_counter() - started)


def math_round(cases) -> tuple[list[float], list[float], int]:
    """One round: checks per second of each pass, direct and isolated, and how many answers the verifier accepted."""
    baseline = KillableWorker("bench.verifier_throughput:direct_pass", timeout_s=600)
    verifier = MathVerifier()
    one = Query.model_validate({"category": "math", "prompt": "1", "reference": {"answer": "1"}})
    verifier.verify(one, "\\boxed{1}")  # waits until the child is ready: its start-up is no check
    pairs = [(query.reference["answer"], answer) for query, answer in cases]
    direct, isolated = [], []
    for _ in range(PASSES):
        direct.append(baseline.call(pairs))
        isolated.append(rate(verifier, cases))
    baseline.close()
    verifier.close()
    return direct, [r["per_s_per_core"] for r in isolated], isolated[-1]["passed"]


def math_rates(cases) -> dict:
    rounds = [math_round(cases) for _ in range(ROUNDS)]
    direct, isolated = [r[0] for r in rounds], [r[1] for r in rounds]
    return {
        "verifications": len(cases),
        "passed": min(r[2] for r in rounds),
        "per_s_per_core": round(statistics.median(r[-1] for r in isolated), 1),
        "direct_in_process_per_s": round(statistics.median(r[-1] for r in direct), 1),
        "ratio_to_direct": round(statistics.median(i[-1] / d[-1] for i, d in zip(isolated, direct)), 2),
        "first_pass_per_s": round(statistics.median(r[0] for r in isolated), 1),
        "direct_first_pass_per_s": round(statistics.median(r[0] for r in direct), 1),
    }


def main() -> None:
    math_cases = [
        (to_query(r, "math500"), f"\\boxed{{{last_boxed(r['solution'])}}}")
        for r in rows("benchmarks/math500.jsonl", 200)
    ]
    arc_cases = [
        (to_query(r, "arc"), f"The answer is {r['answerKey']}.") for r in rows("queries/arc_challenge_dev.jsonl", 200)
    ]
    mbpp = rows("queries/mbpp.jsonl", 60)
    code_cases = [(to_query(r, source_name("mbpp.jsonl")), f"```python\n{r['code']}\n```") for r in mbpp]
    code_verifier = CodeVerifier()
    results = {
        "math (Math-Verify, MATH500 gold)": math_rates(math_cases),
        "science multiple choice (ARC)": rate(ChoiceVerifier(), arc_cases),
        "code (MBPP canonical, 3 tests each)": rate(code_verifier, code_cases),
    }
    code_verifier.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
