"""Benchmark: the LLM judge's judgements per second, against one raw pass of the same engine over the same prompts.

Both sides use one `VLLMEngine` (the judge's engine class) with greedy sampling and all prompts in flight at once.
Raw: one generation per judge prompt. Judge: `judge_answer` on the same prompts, which parses each reply and asks
again (sampled) when there is no grade, up to `max_retries` times. The ratio is what parsing and retries cost with
this judge model; a judge that always grades costs one pass (ratio ≈ 1).

    python -m bench.judge_throughput [--answers 32] [--max-tokens 128]
"""

import argparse
import asyncio
import json
import time
from pathlib import Path

from pipeline.config import JudgeConfig
from pipeline.loaders import to_query
from pipeline.verifiers.judge import judge_answer, judge_messages

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "queries" / "arena_hard_v0.1_questions.jsonl"


async def measure(config: JudgeConfig, cases: list) -> dict:
    from actors.engines import build_engine

    engine = build_engine(config)
    try:
        started = time.perf_counter()
        raw = await asyncio.gather(*(engine.generate(judge_messages(q, a), config.sampling) for q, a in cases))
        raw_s = time.perf_counter() - started
        started = time.perf_counter()
        verdicts = await asyncio.gather(*(
            judge_answer(q, a, engine.generate, config.sampling, config.max_retries) for q, a in cases
        ))
        judge_s = time.perf_counter() - started
    finally:
        engine.shutdown()
    graded = [v for v in verdicts if v.failure is None]
    return {
        "answers": len(cases),
        "raw_pass_s": round(raw_s, 2),
        "raw_tokens": sum(c[0].completion_tokens for c in raw),
        "judge_s": round(judge_s, 2),
        "judgements_per_s": round(len(cases) / judge_s, 2),
        "judge_over_raw": round(judge_s / raw_s, 2),
        "graded": len(graded),
        "mean_requests_per_answer": round(sum(v.details["judge_attempts"] for v in verdicts) / len(cases), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    config = JudgeConfig.model_validate({
        "model": args.model,
        "engine": {"max_model_len": 2048, "enforce_eager": True, "cpu_kv_cache_gib": 1},
        "sampling": {"temperature": 0.0, "max_tokens": args.max_tokens},
    })
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: args.answers]]
    # A plausible but generic answer: what the judge grades matters less here than how many requests it takes.
    cases = [(to_query(r, "arena_hard"), "Here is a short answer: it depends on the details you give.") for r in rows]
    print(json.dumps({"model": args.model, **asyncio.run(measure(config, cases))}, indent=2))


if __name__ == "__main__":
    main()
