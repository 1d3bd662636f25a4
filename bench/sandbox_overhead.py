"""Benchmark: what the sandbox's isolation costs per run, against the same work without it, measured in the same run.

Each variant runs a trivial program (`pass`) and one HumanEval-sized assert test `--runs` times, in interleaved
rounds (so that a change in the machine's load weighs on all alike); medians:
- sandbox: `Sandbox.run`, with everything (a round trip to the zygote, namespaces, limits, privilege drop);
- bare fork: the same fork-and-exec() in a forked interpreter that preloaded the same modules, with no isolation
  at all (`python -I -S`, its output collected through pipes);
- bare interpreter: `python3 -I -S -c`, the cheapest way to start untrusted code without isolation.

    python -m bench.sandbox_overhead [--runs 200]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from pipeline.verifiers.sandbox import PRELOADED_MODULES, Sandbox

TEST = "def f(xs):\n    return sorted(xs)[len(xs) // 2]\nassert f([3, 1, 2]) == 2\n"

# Runs in a fresh `python -I -S`, as the zygote does: the seconds each of `runs` unisolated runs of `code` took.
BARE_FORK = """
import gc, importlib, json, os, sys, time
code, runs = sys.argv[1], int(sys.argv[2])
for name in sys.argv[3].split():
    importlib.import_module(name)
gc.freeze()

def run_once():
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        exec(compile(code, "<solution>", "exec"), {"__name__": "__main__"})
        os._exit(0)
    os.close(out_w)
    os.close(err_w)
    for fd in (out_r, err_r):
        while os.read(fd, 65536):
            pass
        os.close(fd)
    os.waitpid(pid, 0)

times = []
for _ in range(runs):
    started = time.perf_counter()
    run_once()
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""
ROUNDS = 5


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def bare_fork(code: str, runs: int) -> list[float]:
    done = subprocess.run([sys.executable, "-I", "-S", "-c", BARE_FORK, code, str(runs), " ".join(PRELOADED_MODULES)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    per_round = -(-args.runs // ROUNDS)
    sandbox = Sandbox()
    results = {}
    for label, code in [("pass", "pass"), ("test", TEST)]:
        timed(lambda code=code: sandbox.run(code), 20)  # warm up
        times: dict[str, list[float]] = {"sandbox": [], "fork": [], "bare": []}
        for _ in range(ROUNDS):
            times["sandbox"] += timed(lambda code=code: sandbox.run(code), per_round)
            times["fork"] += bare_fork(code, per_round)
            times["bare"] += timed(lambda code=code: subprocess.run([sys.executable, "-I", "-S", "-c", code],
                                                                    check=True), per_round)
        boxed, fork, bare = (statistics.median(times[variant]) * 1000 for variant in ("sandbox", "fork", "bare"))
        results[label] = {
            "sandbox_ms": round(boxed, 2),
            "bare_fork_ms": round(fork, 2),
            "bare_interpreter_ms": round(bare, 2),
            "sandbox_over_bare_fork": round(boxed / fork, 2),
            "sandbox_over_bare_interpreter": round(boxed / bare, 2),
        }
    sandbox.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
