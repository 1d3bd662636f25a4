"""Benchmark: `jobs.filter`'s perplexity scoring against a raw vLLM prefill of the same tokens. Target: ≥ 0.9.

Both sides score the same sequences, GSM8K reference solutions as samples (prompt in SmolLM2's chat template, then
the canonical response: `pipeline.perplexity.scoring_input`), with the same engine arguments
(`actors.vllm_engine.engine_arguments`, prefix caching off, the same `max_num_batched_tokens`) and
`SamplingParams(max_tokens=1, prompt_logprobs=0)`:
- raw: an offline `vllm.LLM.generate` over every sequence's token ids at once, no Ray, timed after the engine is
  built: the ceiling.
- filter: the scorer stage of `jobs.filter` (`actors.perplexity.PerplexityScorer`, a Ray Data actor pool fed batches
  of `batch_size` samples, tokenizing them itself), timed at the driver from the first scored batch to the last and
  counting the tokens of the batches after the first, so the engine's start is left out as on the raw side.
Both engines compute with every core of the host: the scorer's replica asks Ray for all of them (Ray sets an
actor's OMP_NUM_THREADS to its CPUs) and the raw engine is given as many threads. tok/s counts every scored token
(prompt and response). Each side runs alone in a child process, one after the other
(`bench.distill_throughput.in_child`).

    python -m bench.perplexity_throughput [--samples 512] [--batch-size 64] [--num-gpus 0]
"""

import argparse
import json
import os
import time

from bench.distill_throughput import DATA, HOST_CPUS, _ratio, in_child
from pipeline.config import PerplexityFilterConfig
from pipeline.reference_samples import reference_samples

ENGINE = {"max_model_len": 2048, "enforce_eager": True, "cpu_kv_cache_gib": 2}


def samples(count: int) -> list[dict]:
    lines = DATA.read_text().splitlines()
    found = []
    for sample in reference_samples(lines, "gsm8k_train"):
        found.append(sample.model_dump(mode="json"))
        if len(found) == count:
            break
    return found


def scorer_config(batch_size: int, num_gpus: float) -> PerplexityFilterConfig:
    return PerplexityFilterConfig.model_validate(
        {"engine": {**ENGINE, "batch_size": batch_size, "num_gpus": num_gpus, "num_cpus": HOST_CPUS}}
    )


def raw_vllm(rows: list[dict], config: PerplexityFilterConfig) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(HOST_CPUS)  # as many threads as the scorer's replica gets
    from vllm import LLM, SamplingParams

    from actors.vllm_engine import engine_arguments
    from pipeline.config import ServedModel
    from pipeline.perplexity import scoring_input

    llm = LLM(**engine_arguments(ServedModel(model=config.model, engine=config.engine), sampling=False),
              enable_prefix_caching=False, max_num_batched_tokens=config.max_batch_tokens)
    tokenizer = llm.get_tokenizer()
    prompts = [{"prompt_token_ids": scoring_input(row, tokenizer).token_ids} for row in rows]
    started = time.perf_counter()
    outputs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0), use_tqdm=False)
    seconds = time.perf_counter() - started
    assert all(o.prompt_logprobs is not None for o in outputs)
    tokens = sum(len(p["prompt_token_ids"]) for p in prompts)
    return {"tokens": tokens, "tok_s": tokens / seconds}


def filter_scorer(rows: list[dict], config: PerplexityFilterConfig) -> dict:
    import pyarrow as pa
    import ray

    from actors.perplexity import PerplexityScorer
    from pipeline.schema import SAMPLE_SCHEMA

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
        # A block per batch, as the filter reads its shards: Ray Data hands a task's output on only per block.
        size = config.engine.batch_size
        dataset = ray.data.from_arrow([table.slice(start, size) for start in range(0, table.num_rows, size)])
        scored = dataset.map_batches(
            PerplexityScorer, fn_constructor_kwargs={"config": config}, batch_size=config.engine.batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=config.engine.num_cpus,
            num_gpus=config.engine.num_gpus,
        )
        arrivals = []
        for batch in scored.iter_batches(batch_format="pyarrow", batch_size=None):
            arrivals.append((time.perf_counter(), sum(batch.column("reference_tokens").to_pylist())))
    finally:
        ray.shutdown()  # before reporting: the parent ends this process group once it has the result
    tokens = sum(n for _, n in arrivals[1:])
    return {"tokens": sum(n for _, n in arrivals), "tok_s": tokens / (arrivals[-1][0] - arrivals[0][0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64, help="samples per Ray Data batch (the filter side)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs for each engine; 0 runs on CPU")
    args = parser.parse_args()

    rows = samples(args.samples)
    config = scorer_config(args.batch_size, args.num_gpus)
    sides = {"raw": in_child(raw_vllm, rows, config), "filter": in_child(filter_scorer, rows, config)}
    result = {"samples": len(rows), **{name: side if "error" in side else
                                       {"tokens": side["tokens"], "tok_s": round(side["tok_s"], 1)}
                                       for name, side in sides.items()}}
    result["filter_over_raw"] = _ratio(sides["filter"], sides["raw"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
