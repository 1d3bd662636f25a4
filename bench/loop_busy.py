"""Benchmark (b): engine slot occupancy over a whole run with retries, through the production loop.

Runs `jobs.distill`'s real pipeline (Ray Data, the teacher stage, the regenerate loop, Math-Verify verifier actors,
Parquet output) on "What is A + B?" queries, with the SIMULATED continuous-batching engine of
`bench/simulated_engine.py` standing in for vLLM. The engine answers right with probability `--pass-rate`, so about
half the queries are regenerated, up to `--max-attempts` times.

Headline: slot occupancy, the time-weighted mean of sequences running ÷ `--slots`, measured by the engine from the
moment it was ready to its last finished request. 1.0 means the loop never let a slot go empty; every second the
loop is late to send a request (retries waiting on verification, batches waiting for their slowest row, Ray Data
scheduling, start-up) lowers it. The engine keeps its own clock, so a slow loop cannot hide by slowing it down.

    python -m bench.loop_busy [--queries 2000] [--batch-size 1 --batches-in-flight 128]
"""

import argparse
import json
import random
import tempfile
from pathlib import Path

from actors.distill_run import format_summary, run_distill
from pipeline.config import DistillConfig, parse_config
from pipeline.storage import Store


def write_queries(path: Path, count: int) -> None:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(count):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            row = {"id": f"sum-{i}", "category": "math", "prompt": f"What is {a} + {b}?",
                   "reference": {"answer": str(a + b)}}
            f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--max-attempts", type=int, default=4)
    parser.add_argument("--pass-rate", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=32, help="simulated max_num_seqs")
    parser.add_argument("--step-ms", type=float, default=5.0, help="simulated time per token of one sequence")
    parser.add_argument("--tokens", type=int, nargs=2, default=[32, 96], metavar=("MIN", "MAX"),
                        help="tokens per candidate, uniform")
    parser.add_argument("--batch-size", type=int, default=16, help="the teacher's engine.batch_size")
    parser.add_argument("--batches-in-flight", type=int, default=16, help="the teacher's engine.batches_in_flight")
    parser.add_argument("--verifiers", type=int, default=2, help="verifier actors")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loop-busy-"))
    write_queries(work / "sums.jsonl", args.queries)
    stats_path = work / "engine_stats.json"
    config = parse_config(DistillConfig, {
        "input": {"paths": [str(work / "sums.jsonl")]},
        "output": str(work / "out"),
        "teachers": [{
            "name": "simulated",
            "model": "simulated",
            "engine": {
                "batch_size": args.batch_size,
                "batches_in_flight": args.batches_in_flight,
                "engine_kwargs": {
                    "step_s": args.step_ms / 1000, "max_num_seqs": args.slots, "pass_rate": args.pass_rate,
                    "min_tokens": args.tokens[0], "max_tokens": args.tokens[1], "stats_path": str(stats_path),
                },
            },
            "sampling": {"default": {"n": 1}},
            "max_attempts": args.max_attempts,
        }],
        "verifiers": {"replicas": args.verifiers, "num_cpus": 0.25},
        "ray": {"dashboard": False},
        "shard_rows": 1024,
    })
    summary = run_distill(config, progress=args.progress, engine_class="bench.simulated_engine:SimulatedEngine")
    print(format_summary(summary))
    stats = json.loads(stats_path.read_text())
    attempts = Store(config.output).read_table("teachers/simulated/attempts", columns=["id"])
    mean_tokens = sum(args.tokens) / 2
    result = {
        "queries": args.queries,
        "generations": attempts.num_rows,
        "batch_size": args.batch_size,
        "batches_in_flight": args.batches_in_flight,
        "slot_occupancy": round(stats["slot_s"] / (stats["slots"] * stats["window_s"]), 3),
        "mean_requests_in_engine": round(stats["mean_requests_in_engine"], 1),
        "engine_window_s": round(stats["window_s"], 1),
        "ready_to_first_request_s": round(stats["ready_to_first_request_s"], 2),
        # What the engine could finish if it were never starved: the rate the loop must keep up with.
        "engine_capacity_per_s": round(args.slots / (mean_tokens * args.step_ms / 1000)),
        "run_wall_s": summary["wall_s"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
