"""Benchmark (a): distill throughput ÷ raw vLLM offline throughput, same prompts, model, sampling and machine.

Both sides generate once per prompt (max_attempts 1, n 1) with greedy sampling, so they produce the same tokens.
Raw: `vllm.LLM.generate` on all prompts at once, timed after the engine is built. Distill: the full `jobs.distill`
pipeline (Ray Data, teacher actor, verifier actors, Parquet), timed from the engine being ready to the last result.
The raw side runs in a child process first, so the two engines never share the machine.

    python -m bench.distill_throughput [--prompts 64] [--max-tokens 256]
"""

import argparse
import json
import multiprocessing as mp
import os
import signal
import tempfile
import time
from pathlib import Path

from pipeline.config import DistillConfig, parse_config
from pipeline.loaders import parse_jsonl_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "queries" / "gsm8k_train.jsonl"
ENGINE = {"max_model_len": 2048, "enforce_eager": True, "cpu_kv_cache_gib": 1}
SYSTEM = "Solve the problem step by step. End with a line that states the final answer."


def raw_vllm(prompts: list[str], max_tokens: int, out: mp.Queue) -> None:
    os.setsid()  # a process group of its own, so the parent can end the engine's processes with it
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(ENGINE["cpu_kv_cache_gib"]))
    from vllm import LLM, SamplingParams

    from pipeline.models import resolve_model

    llm = LLM(resolve_model("smollm2-135m-instruct"), max_model_len=ENGINE["max_model_len"], enforce_eager=True)
    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
    started = time.perf_counter()
    outputs = llm.chat(conversations, SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=False)
    wall = time.perf_counter() - started
    out.put({"tokens": sum(len(o.outputs[0].token_ids) for o in outputs), "seconds": wall})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    rows = parse_jsonl_file(str(DATA), DATA.read_bytes())[: args.prompts]
    prompts = [json.loads(r["query"])["messages"][0]["content"] for r in rows]

    queue: mp.Queue = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(target=raw_vllm, args=(prompts, args.max_tokens, queue))
    child.start()
    raw = queue.get()
    # The child's exit would wait on the engine's own processes: end its whole group.
    os.killpg(child.pid, signal.SIGKILL)
    child.join()

    from actors.distill_run import run_distill

    work = Path(tempfile.mkdtemp(prefix="distill-throughput-"))
    config = parse_config(DistillConfig, 
        {
            "input": {"paths": [str(DATA)], "limit": args.prompts},
            "output": str(work / "out"),
            "teachers": [
                {
                    "name": "smollm2",
                    "model": "smollm2-135m-instruct",
                    "response_format": "plain",
                    "system_prompt": SYSTEM,
                    "engine": {**ENGINE, "batch_size": 4, "batches_in_flight": max(1, args.prompts // 4)},
                    "sampling": {"default": {"temperature": 0.0, "max_tokens": args.max_tokens, "n": 1}},
                    "max_attempts": 1,
                }
            ],
            "verifiers": {"replicas": 1},
            "ray": {"dashboard": False},
        }
    )
    summary = run_distill(config, progress=False)["teachers"][0]
    raw_rate = raw["tokens"] / raw["seconds"]
    result = {
        "prompts": args.prompts,
        "raw_tokens": raw["tokens"],
        "raw_tok_s": round(raw_rate, 1),
        "distill_tokens": summary["generated_tokens"],
        "distill_tok_s": summary["tokens_per_s"],
        "ratio": round(summary["tokens_per_s"] / raw_rate, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
