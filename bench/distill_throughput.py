"""Benchmark (a): distill throughput against raw vLLM and against Ray Data LLM, same prompts, model, sampling, machine.

All three generate once per prompt (distill: max_attempts 1, n 1) with greedy sampling, from the same chat
(system prompt + GSM8K question), so they produce about the same tokens; the token counts are printed to check.
- raw: `vllm.LLM.chat` on all prompts at once, timed after the engine is built: the ceiling.
- ray_data_llm: `ray.data.llm.build_processor` with `vLLMEngineProcessorConfig`, one pass over a dataset of the
  prompts, timed from the first request reaching the engine (vLLM's `arrival_time`) to the last row at the driver.
  This is what a user would pick to run a model over a dataset on Ray without a verify loop.
- distill: the full `jobs.distill` pipeline (Ray Data, teacher actor, verifier actors, Parquet), timed from the
  engine being ready to the last result at the driver: a little more than ray_data_llm's span, which starts at the
  first request.
Each side runs in its own process (raw and ray_data_llm in children, one after the other), so no two engines ever
share the machine. On CPU the Ray Data LLM engine stage gets a one-CPU placement bundle (by default it asks for a
GPU and waits forever) and its tokenize stages a quarter CPU each (a whole one each starves the engine on a 2-CPU
cluster); `--num-gpus 1` gives it, and distill's teacher, a GPU instead.

    python -m bench.distill_throughput [--prompts 64] [--max-tokens 256] [--num-gpus 0]
"""

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.config import DistillConfig, parse_config
from pipeline.loaders import parse_jsonl_file

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "queries" / "gsm8k_train.jsonl"
HOST_CPUS = os.cpu_count() or 1  # what a raw engine computes with; engines in Ray actors get it by asking for it
ENGINE = {"max_model_len": 2048, "enforce_eager": True, "cpu_kv_cache_gib": 1}
SYSTEM = "Solve the problem step by step. End with a line that states the final answer."
# Where an engine in a Ray actor keeps its KV cache on CPU, and why it must not pin cores: as distill's engine does.
CPU_ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": str(ENGINE["cpu_kv_cache_gib"]), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def chat(prompt: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def raw_vllm(prompts: list[str], max_tokens: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_ENGINE_ENV["VLLM_CPU_KVCACHE_SPACE"])
    from vllm import LLM, SamplingParams

    from pipeline.models import resolve_model

    llm = LLM(resolve_model("smollm2-135m-instruct"), max_model_len=ENGINE["max_model_len"], enforce_eager=True)
    started = time.perf_counter()
    outputs = llm.chat([chat(p) for p in prompts], SamplingParams(temperature=0.0, max_tokens=max_tokens),
                       use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"tokens": tokens, "tok_s": tokens / seconds}


def ray_data_llm(prompts: list[str], max_tokens: int, num_gpus: float) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from pipeline.models import resolve_model

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        light = {"num_cpus": 0.25}
        config = vLLMEngineProcessorConfig(
            model_source=resolve_model("smollm2-135m-instruct"),
            engine_kwargs={"max_model_len": ENGINE["max_model_len"], "enforce_eager": True},
            batch_size=16,
            max_concurrent_batches=max(1, len(prompts) // 16),  # every prompt in flight at once, as on the other sides
            concurrency=1,
            placement_group_config={"bundles": [{"GPU": num_gpus, "CPU": 1} if num_gpus else {"CPU": 1}]},
            runtime_env=None if num_gpus else {"env_vars": CPU_ENGINE_ENV},
            chat_template_stage=light,
            tokenize_stage=light,
            detokenize_stage=light,
        )
        processor = build_processor(
            config,
            preprocess=_preprocess(max_tokens),
            postprocess=lambda row: {
                "tokens": row["num_generated_tokens"], "arrival_time": row["metrics"]["arrival_time"],
            },
        )
        rows = []
        for row in processor(ray.data.from_items([{"prompt": p} for p in prompts])).iter_rows():
            rows.append(row)
            last_at = time.time()
    finally:
        ray.shutdown()  # before reporting: the parent ends this process group once it has the result
    tokens = sum(r["tokens"] for r in rows)
    return {"tokens": tokens, "tok_s": tokens / (last_at - min(r["arrival_time"] for r in rows))}


def _preprocess(max_tokens: int) -> Callable[[dict], dict]:
    """A closure over plain values, so Ray pickles it whole: run as `python -m`, this module is `__main__`, which
    Ray's workers cannot import."""
    system = SYSTEM
    return lambda row: {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": row["prompt"]}],
        "sampling_params": {"temperature": 0.0, "max_tokens": max_tokens},
    }


def _report(target: Callable, args: tuple, out: mp.Queue) -> None:
    """Runs in the child: a side that cannot run here (no GPU, a Ray Data LLM that refuses this vLLM) says why in its
    column instead of taking the other sides down with it."""
    os.setsid()  # a process group of its own, so the parent can end the engine's processes with it
    try:
        out.put(target(*args))
    except Exception as err:  # noqa: BLE001 - reported in the result, never hidden
        out.put({"error": f"{type(err).__name__}: {err}"[:1000]})


def in_child(target: Callable, *args) -> dict:
    results: mp.Queue = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(target=_report, args=(target, args, results))
    child.start()
    result = None
    while result is None:
        try:
            result = results.get(timeout=5)
        except queue.Empty:
            if not child.is_alive():
                result = {"error": f"the child process died (exit code {child.exitcode})"}
    # The child's exit would wait on the engine's own processes: end its whole group, if anything is left of it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.join()
    return result


def distill(prompts: int, max_tokens: int, num_gpus: float) -> dict:
    from actors.distill_run import run_distill

    work = Path(tempfile.mkdtemp(prefix="distill-throughput-"))
    config = parse_config(DistillConfig, {
        "input": {"paths": [str(DATA)], "limit": prompts},
        "output": str(work / "out"),
        "teachers": [{
            "name": "smollm2",
            "model": "smollm2-135m-instruct",
            "response_format": "plain",
            "system_prompt": SYSTEM,
            "engine": {**ENGINE, "num_gpus": num_gpus, "batch_size": 4, "batches_in_flight": max(1, prompts // 4)},
            "sampling": {"default": {"temperature": 0.0, "max_tokens": max_tokens, "n": 1}},
            "max_attempts": 1,
        }],
        "verifiers": {"replicas": 1},
        "ray": {"dashboard": False},
    })
    summary = run_distill(config, progress=False)["teachers"][0]
    return {"tokens": summary["generated_tokens"], "tok_s": summary["tokens_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs for each engine; 0 runs on CPU")
    args = parser.parse_args()

    rows = parse_jsonl_file(str(DATA), DATA.read_bytes())[: args.prompts]
    prompts = [json.loads(r["query"])["messages"][0]["content"] for r in rows]
    sides = {
        "raw": in_child(raw_vllm, prompts, args.max_tokens),
        "ray_data_llm": in_child(ray_data_llm, prompts, args.max_tokens, args.num_gpus),
        "distill": distill(args.prompts, args.max_tokens, args.num_gpus),
    }
    result = {"prompts": args.prompts}
    for name, side in sides.items():
        result[name] = side if "error" in side else {
            "tokens": side["tokens"], "tok_s": round(side["tok_s"], 1), "over_raw": _ratio(side, sides["raw"]),
        }
    result["distill_over_ray_data_llm"] = _ratio(sides["distill"], sides["ray_data_llm"])
    print(json.dumps(result, indent=2))


def _ratio(side: dict, baseline: dict) -> float | None:
    """None when either side could not run."""
    if "error" in side or "error" in baseline:
        return None
    return round(side["tok_s"] / baseline["tok_s"], 3)


if __name__ == "__main__":
    main()
