"""Benchmark (b): how busy the generator stays over a whole run with retries, through the production loop.

Runs `jobs.distill`'s real pipeline (Ray Data, the teacher stage, the regenerate loop, Math-Verify verifier actors,
Parquet output) on thousands of "What is A + B?" queries, with the SIMULATED continuous-batching engine from
`bench/simulated_engine.py` standing in for vLLM. Prints the busy fraction (time the engine had work ÷ time from its
first request to its last result) and the slot occupancy (mean running requests ÷ max_num_seqs).

    python -m bench.loop_busy [--queries 2000]
"""

import argparse
import json
import random
import tempfile
from pathlib import Path

from actors.distill_run import format_summary, run_distill
from pipeline.config import DistillConfig, parse_config
from pipeline.storage import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--max-attempts", type=int, default=4)
    parser.add_argument("--pass-rate", type=float, default=0.5)
    parser.add_argument("--step-ms", type=float, default=5.0, help="simulated time per decoding step")
    parser.add_argument("--slots", type=int, default=32, help="simulated max_num_seqs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loop-busy-"))
    rng = random.Random(0)
    with open(work / "sums.jsonl", "w") as f:
        for i in range(args.queries):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            row = {"id": f"sum-{i}", "category": "math", "prompt": f"What is {a} + {b}?",
                   "reference": {"answer": str(a + b)}}
            f.write(json.dumps(row) + "\n")
    stats_path = work / "engine_stats.json"
    config = parse_config(DistillConfig, 
        {
            "input": {"paths": [str(work / "sums.jsonl")]},
            "output": str(work / "out"),
            "teachers": [
                {
                    "name": "simulated",
                    "model": "simulated",
                    "engine": {
                        "batch_size": 8,
                        "batches_in_flight": 2 * args.slots // 8,
                        "engine_kwargs": {
                            "step_s": args.step_ms / 1000, "max_num_seqs": args.slots, "pass_rate": args.pass_rate,
                            "stats_path": str(stats_path),
                        },
                    },
                    "sampling": {"default": {"n": 1}},
                    "max_attempts": args.max_attempts,
                }
            ],
            "verifiers": {"replicas": 2, "num_cpus": 0.25},
            "ray": {"dashboard": False},
            "shard_rows": 1024,
        }
    )
    summary = run_distill(config, progress=True, engine_class="bench.simulated_engine:SimulatedEngine")
    print(format_summary(summary))
    stats = json.loads(stats_path.read_text())
    attempts = Store(config.output).read_table("teachers/simulated/attempts", columns=["id"])
    result = {
        "queries": args.queries,
        "generations": attempts.num_rows,
        "engine_window_s": round(stats["window_s"], 1),
        "busy_fraction": round(stats["busy_s"] / stats["window_s"], 3),
        "slot_occupancy": round(stats["slot_s"] / stats["window_s"], 3),
        "run_wall_s": summary["wall_s"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
