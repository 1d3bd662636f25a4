"""Benchmark: per-run cost of the sandbox against a bare interpreter, measured in the same run.

Each variant runs a trivial program (`pass`) and one HumanEval-sized test many times; medians are reported, with
the sandbox's cost as a ratio to `python3 -I -S -c` (the cheapest way to start untrusted code without isolation).

    python -m bench.sandbox_overhead [--runs 200]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from pipeline.verifiers.sandbox import Sandbox

TEST = "def f(xs):\n    return sorted(xs)[len(xs) // 2]\nassert f([3, 1, 2]) == 2\n"


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    sandbox = Sandbox()
    results = {}
    for label, code in [("pass", "pass"), ("test", TEST)]:
        bare = median_ms(lambda: subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True), args.runs)
        boxed = median_ms(lambda: sandbox.run(code), args.runs)
        results[label] = {"bare_interpreter_ms": round(bare, 2), "sandbox_ms": round(boxed, 2),
                          "sandbox_over_bare": round(boxed / bare, 3)}
    sandbox.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
