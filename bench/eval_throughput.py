"""Benchmark: `jobs.evaluate` throughput against raw vLLM offline, same prompts, model, n, sampling and machine.

Both sides answer the same GSM8K problems (`pipeline.benchmarks`, the paper's math prompt) with n samples each, at
the paper's temperature and top_p with a fixed seed, so they generate about the same tokens (both counts are
printed to check). The method of bench/distill_throughput.py:
- raw: `vllm.LLM.chat` on every prompt at once, one request per problem with `n` samples, timed after the engine is
  built: the ceiling;
- evaluate: the whole job (Ray Data, the evaluation actor, verifier actors, Parquet on a local disk), timed from the
  engine being ready to the last result at the driver (results.json's `this_run`).
Each side runs alone: raw in a child process that ends with its engine, then the evaluation, so no two engines
share the machine. Both engines compute with every core of the host: the evaluation's replica asks Ray for all of
them (Ray sets an actor's OMP_NUM_THREADS to its CPUs, so a 1-CPU replica would compute on one thread), and the raw
engine is given as many threads. The issue's target is evaluate/raw >= 0.9.

    python -m bench.eval_throughput [--problems 32] [--samples 4] [--max-tokens 256] [--num-gpus 0]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.distill_throughput import ENGINE, HOST_CPUS, _ratio, in_child
from pipeline.config import EvaluateConfig, parse_config

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks" / "gsm8k_test.jsonl"


def evaluate_config(problems: int, samples: int, max_tokens: int, dtype: str, num_gpus: float, output: str) -> dict:
    return {
        "output": output,
        "models": [{
            "name": "smollm2",
            "model": "smollm2-135m-instruct",
            "response_format": "answer_only",
            "system_prompt": "",
            "engine": {**ENGINE, "dtype": dtype, "num_gpus": num_gpus, "num_cpus": HOST_CPUS,
                       "batches_in_flight": problems},
            "sampling": {"max_tokens": max_tokens},
        }],
        "benchmarks": [{"name": "gsm8k", "path": str(DATA), "limit": problems, "samples": samples}],
        "verifiers": {"replicas": 1, "code": False},
        "ray": {"dashboard": False},
    }


def raw_vllm(config: dict) -> dict:
    """The same conversations and sampling as the evaluation sends, in one offline batch."""
    os.environ["OMP_NUM_THREADS"] = str(HOST_CPUS)  # as many threads as the evaluation's replica gets
    from vllm import LLM, SamplingParams

    from actors.evaluate_run import load_benchmarks
    from actors.vllm_engine import engine_arguments
    from pipeline.regenerate import conversation_prefix

    parsed = parse_config(EvaluateConfig, config)
    model = parsed.models[0]
    queries = load_benchmarks(parsed)["gsm8k"].queries
    chats = [[m.model_dump() for m in conversation_prefix(model, q) + list(q.messages)] for q in queries]
    llm = LLM(**engine_arguments(model))  # the evaluation's own engine arguments
    sampling = model.sampling
    params = SamplingParams(n=parsed.benchmarks[0].samples_per_problem(), temperature=sampling.temperature,
                            top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=sampling.seed)
    started = time.perf_counter()
    outputs = llm.chat(chats, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return {"tokens": tokens, "tok_s": tokens / seconds}


def evaluate(config: dict) -> dict:
    from actors.evaluate_run import run_evaluate

    run = run_evaluate(parse_config(EvaluateConfig, config), progress=False)["this_run"]["smollm2"]
    return {"tokens": run["completion_tokens"], "tok_s": run["tok_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4, help="samples per problem (vLLM's n)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="float32", help="both sides; float32 is the fast one on AVX2-only CPUs")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs for each engine; 0 runs on CPU")
    args = parser.parse_args()

    output = str(Path(tempfile.mkdtemp(prefix="eval-throughput-")) / "out")
    config = evaluate_config(args.problems, args.samples, args.max_tokens, args.dtype, args.num_gpus, output)
    sides = {"raw": in_child(raw_vllm, config), "evaluate": evaluate(config)}
    result = {"problems": args.problems, "samples": args.samples, "max_tokens": args.max_tokens}
    for name, side in sides.items():
        result[name] = side if "error" in side else {"tokens": side["tokens"], "tok_s": round(side["tok_s"], 1)}
    result["evaluate_over_raw"] = _ratio(sides["evaluate"], sides["raw"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
