"""Benchmark: the LLM judge's time against one raw pass of the same engine over the same prompts.

One `VLLMEngine` (the judge's engine class), greedy sampling, all prompts in flight at once. Raw: one generation
per judge prompt. Judge: `judge_answer` on the same prompts, which parses each reply and asks again (sampled) when
there is no grade, up to `max_retries` times. The ratio is what parsing and retries cost with this judge model; a
judge that always grades costs one pass (ratio ≈ 1).

Both sides must do equal work, so nothing may carry over from one pass to the next:
- prefix caching is off, or a pass would reuse the prompts the pass before it already computed;
- a short warm-up request runs first, so no pass pays for the engine's first steps;
- the passes run raw, judge, judge, raw, so a drift in the machine's speed (other jobs) weighs on both sides alike.
Within a judge pass a retry recomputes its prompt; with caching on (vLLM's default) it would not, so the ratio is,
if anything, a little high.

    python -m bench.judge_throughput [--answers 32] [--max-tokens 128]
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from pipeline.config import JudgeConfig, SamplingConfig
from pipeline.loaders import to_query
from pipeline.schema import Message
from pipeline.verifiers.judge import judge_answer, judge_messages

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "queries" / "arena_hard_v0.1_questions.jsonl"
ORDER = ["raw", "judge", "judge", "raw"]


async def measure(config: JudgeConfig, cases: list) -> dict:
    from actors.engines import build_engine

    engine = build_engine(config)

    async def raw_pass() -> dict:
        outputs = await asyncio.gather(*(engine.generate(judge_messages(q, a), config.sampling) for q, a in cases))
        return {"tokens": sum(c[0].completion_tokens for c in outputs), "requests": len(cases)}

    async def judge_pass() -> dict:
        verdicts = await asyncio.gather(*(
            judge_answer(q, a, engine.generate, config.sampling, config.max_retries) for q, a in cases
        ))
        requests = sum(v.details["judge_attempts"] for v in verdicts)
        return {"graded": sum(v.failure is None for v in verdicts), "requests": requests}

    try:
        await engine.generate([Message(role="user", content="Say hello.")], SamplingConfig(max_tokens=8))
        passes = []
        for kind in ORDER:
            started = time.perf_counter()
            result = await (raw_pass() if kind == "raw" else judge_pass())
            passes.append({"pass": kind, "seconds": round(time.perf_counter() - started, 2), **result})
            print(json.dumps(passes[-1]), file=sys.stderr, flush=True)
    finally:
        engine.shutdown()
    seconds = {kind: sum(p["seconds"] for p in passes if p["pass"] == kind) for kind in ("raw", "judge")}
    judge_passes = [p for p in passes if p["pass"] == "judge"]
    judge_answers = len(cases) * len(judge_passes)
    return {
        "answers": len(cases),
        "passes": passes,
        "judge_over_raw": round(seconds["judge"] / seconds["raw"], 2),
        # Each order on its own: if these two differ much, something still carries over between passes.
        "judge_over_raw_judge_second": round(passes[1]["seconds"] / passes[0]["seconds"], 2),
        "judge_over_raw_judge_first": round(passes[2]["seconds"] / passes[3]["seconds"], 2),
        "judgements_per_s": round(judge_answers / seconds["judge"], 2),
        "mean_requests_per_answer": round(sum(p["requests"] for p in judge_passes) / judge_answers, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    config = JudgeConfig.model_validate({
        "model": args.model,
        "engine": {
            "max_model_len": 2048, "enforce_eager": True, "cpu_kv_cache_gib": 1,
            "engine_kwargs": {"enable_prefix_caching": False},
        },
        "sampling": {"temperature": 0.0, "max_tokens": args.max_tokens},
    })
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: args.answers]]
    # A plausible but generic answer: what the judge grades matters less here than how many requests it takes.
    cases = [(to_query(r, "arena_hard"), "Here is a short answer: it depends on the details you give.") for r in rows]
    print(json.dumps({"model": args.model, **asyncio.run(measure(config, cases))}, indent=2))


if __name__ == "__main__":
    main()
