"""Choose the demo's queries by measured difficulty: how often the embedded model solves each one.

A demo should show all three outcomes of the verify-and-regenerate loop: queries accepted on the first round,
queries accepted after regeneration, and queries exhausted. Which queries do that depends on the model, so they are
chosen from a measurement, in two re-runnable steps around one `jobs.distill` run:

    python -m bench.demo_difficulty pool --data ../shared/data/queries --out /tmp/demo_pool
    python -m jobs.distill --config /tmp/demo_pool/measure.yaml
    python -m bench.demo_difficulty choose --pool /tmp/demo_pool/pool.jsonl \
        --attempts /tmp/demo_pool/run/teachers/smollm2/attempts --out configs/demo_queries.jsonl

`pool` draws candidates from the public data (the shortest GSM8K and MATH level-1 questions, the shortest ARC
questions, IFEval prompts with one instruction a short answer can follow, the shortest MBPP tasks), writes them in
the query format with the categories interleaved (a measurement stopped early still covers every category), and
writes `measure.yaml`: `configs/demo.yaml` with the pool as input, one round per query and `--candidates` candidates
in it. Its teacher settings stay the demo's, so the pass rates are the demo's.

`choose` reads the attempts log of that run. A query's pass rate is the share of its first-round candidates that
passed (request failures and verifier errors are not counted); the measurement's rounds are all first rounds. It
prints every rate, then picks, spread over the categories, queries the model solves often (expected: accepted on the
first round), sometimes (expected: accepted after regeneration) and never (expected: exhausted), and writes them in
the query format with the measured rate in `metadata`.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pipeline.engine import REQUEST_FAILURES
from pipeline.loaders import to_query
from pipeline.regenerate import VERIFIER_ERROR
from pipeline.schema import Query

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
# IFEval instructions that a short answer can follow (the plain format checks the answer's last line or code block).
SHORT_ANSWER_INSTRUCTIONS = {
    "punctuation:no_comma", "change_case:english_lowercase", "change_case:english_capital", "keywords:existence",
    "keywords:forbidden_words", "detectable_content:postscript", "startend:end_checker",
}
NOT_THE_ANSWERS_FAULT = REQUEST_FAILURES | {VERIFIER_ERROR}


def _rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) for each row of a JSONL file."""
    with path.open() as f:
        return [(number, json.loads(line)) for number, line in enumerate(f, 1) if line.strip()]


def _shortest(rows: list[tuple[int, dict]], text, count: int) -> list[tuple[int, dict]]:
    return sorted(rows, key=lambda row: (len(text(row[1])), row[0]))[:count]


def draw_pool(data: Path, per_category: dict[str, int]) -> list[Query]:
    """Candidate queries from the shared public data, categories interleaved. Ids name the file and line."""
    drawn = {
        "gsm8k_train": _shortest(_rows(data / "gsm8k_train.jsonl"), lambda r: r["question"], per_category["gsm8k"]),
        "math_train": _shortest(
            [(n, r) for n, r in _rows(data / "math_train.jsonl")
             if r["level"] == "Level 1" and r["type"] in {"Prealgebra", "Algebra"}],
            lambda r: r["problem"], per_category["math"]),
        "arc_challenge_dev": _shortest(
            _rows(data / "arc_challenge_dev.jsonl"), lambda r: r["question"]["stem"], per_category["arc"]),
        "ifeval_input_data": _shortest(
            [(n, r) for n, r in _rows(data / "ifeval_input_data.jsonl")
             if len(r["instruction_id_list"]) == 1 and r["instruction_id_list"][0] in SHORT_ANSWER_INSTRUCTIONS],
            lambda r: r["prompt"], per_category["ifeval"]),
        "mbpp": _shortest(_rows(data / "mbpp.jsonl"), lambda r: r["text"], per_category["mbpp"]),
    }
    per_source = []
    for source, rows in drawn.items():
        queries = []
        for line, record in rows:
            query = to_query(record, source)
            if not isinstance(query, Query):
                raise SystemExit(f"{data / source}.jsonl:{line}: {query.reason}: {query.detail}")
            metadata = {**query.metadata, "source_file": f"queries/{source}.jsonl", "source_line": line}
            queries.append(query.model_copy(update={"id": f"{source}-L{line}", "metadata": metadata}))
        per_source.append(queries)
    return [q for group in zip_longest(*per_source) for q in group if q is not None]


def measure_config(pool: Path, output: Path, candidates: int) -> dict:
    """`configs/demo.yaml` with the pool as input and one round of `candidates` candidates per query."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["input"] = {"paths": [str(pool)]}
    config["output"] = str(output)
    for teacher in config["teachers"]:
        teacher["max_attempts"] = 1
        for sampling in teacher["sampling"].values():
            sampling["n"] = candidates
    return config


def pass_rates(attempts: list[Path]) -> dict[str, tuple[int, int]]:
    """(passed, counted) first-round candidates per query id, over one or more attempts folders."""
    columns = ["id", "attempt", "turn", "failure"]
    table = [row for folder in attempts for row in pq.read_table(folder, columns=columns).to_pylist()]
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in table:
        if row["attempt"] != 1 or row["turn"] != 0 or row["failure"] in NOT_THE_ANSWERS_FAULT:
            continue
        counts[row["id"]][0] += row["failure"] is None
        counts[row["id"]][1] += 1
    return {query_id: (passed, counted) for query_id, (passed, counted) in counts.items()}


def bucket(rate: float, often: float) -> str:
    return "often" if rate >= often else "sometimes" if rate > 0 else "never"


def choose(measured: list[tuple[Query, float]], targets: dict[str, int], often: float) -> list[tuple[Query, float]]:
    """Per bucket, take queries round-robin over the categories (most typical of the bucket first: the highest rates
    for `often`, rates nearest the middle of (0, often) for `sometimes`), until the bucket's target is met."""
    chosen = []
    for name, target in targets.items():
        by_category: dict[str, list[tuple[Query, float]]] = defaultdict(list)
        for query, rate in measured:
            if bucket(rate, often) == name:
                by_category[query.category.value].append((query, rate))
        key = {"often": lambda qr: -qr[1], "sometimes": lambda qr: abs(qr[1] - often / 2), "never": lambda qr: 0}[name]
        queues = [sorted(items, key=lambda qr: (key(qr), qr[0].id)) for _, items in sorted(by_category.items())]
        picked = [qr for group in zip_longest(*queues) for qr in group if qr is not None][:target]
        if len(picked) < target:
            print(f"warning: only {len(picked)} queries solved {name}, {target} wanted")
        chosen += picked
    return chosen


def expected_outcomes(rates: list[float]) -> str:
    """What the demo's settings should give on queries with these pass rates, if candidates were independent."""
    teacher = yaml.safe_load(DEMO_CONFIG.read_text())["teachers"][0]
    n, rounds = teacher["sampling"]["default"]["n"], teacher["max_attempts"]
    first = sum(1 - (1 - rate) ** n for rate in rates)
    exhausted = sum((1 - rate) ** (n * rounds) for rate in rates)
    return (f"expected with the demo's n={n}, max_attempts={rounds}: {first:.1f} accepted in round 1, "
            f"{len(rates) - first - exhausted:.1f} later, {exhausted:.1f} exhausted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    pool = steps.add_parser("pool", help="draw the candidate pool and write the measurement config")
    pool.add_argument("--data", type=Path, default=Path("../shared/data/queries"), help="the shared queries folder")
    pool.add_argument("--out", type=Path, required=True, help="folder for pool.jsonl, measure.yaml and the run")
    pool.add_argument("--candidates", type=int, default=4, help="candidates per query in the measurement")
    pool.add_argument("--gsm8k", type=int, default=40)
    pool.add_argument("--math", type=int, default=16)
    pool.add_argument("--arc", type=int, default=40)
    pool.add_argument("--ifeval", type=int, default=40)
    pool.add_argument("--mbpp", type=int, default=8)
    pick = steps.add_parser("choose", help="print the pass rates and write the chosen queries")
    pick.add_argument("--pool", type=Path, required=True, help="the pool the measurement ran on")
    pick.add_argument("--attempts", type=Path, nargs="+", required=True,
                      help="the measurement's teachers/NAME/attempts folder (several: a measurement in parts)")
    pick.add_argument("--out", type=Path, required=True, help="where to write the chosen queries (JSONL)")
    pick.add_argument("--often", type=float, default=0.5, help="a pass rate from which a query is solved often")
    pick.add_argument("--targets", default="often=10,sometimes=16,never=6", help="queries per bucket")
    args = parser.parse_args()

    if args.step == "pool":
        queries = draw_pool(args.data, {k: getattr(args, k) for k in ("gsm8k", "math", "arc", "ifeval", "mbpp")})
        args.out.mkdir(parents=True, exist_ok=True)
        pool_path = args.out / "pool.jsonl"
        pool_path.write_text("".join(q.model_dump_json(exclude_defaults=True) + "\n" for q in queries))
        config = measure_config(pool_path.resolve(), (args.out / "run").resolve(), args.candidates)
        (args.out / "measure.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"{len(queries)} queries in {pool_path}; measure with: python -m jobs.distill --config "
              f"{args.out / 'measure.yaml'}")
        return

    pool_queries = {q.id: q for q in (Query.model_validate_json(line) for line in args.pool.open() if line.strip())}
    rates = pass_rates(args.attempts)
    measured = [(pool_queries[i], passed / counted) for i, (passed, counted) in rates.items() if counted]
    print(f"{'id':<32} {'category':<22} passed/candidates  rate")
    for query, rate in sorted(measured, key=lambda qr: (qr[0].category.value, -qr[1], qr[0].id)):
        passed, counted = rates[query.id]
        print(f"{query.id:<32} {query.category.value:<22} {passed:>6}/{counted:<10} {rate:.2f}")
    print(f"measured {len(measured)} of {len(pool_queries)} pool queries")
    targets = {name: int(count) for name, count in (part.split("=") for part in args.targets.split(","))}
    chosen = choose(measured, targets, args.often)
    lines = []
    for query, rate in chosen:
        passed, counted = rates[query.id]
        metadata = {**query.metadata, "pass_rate": round(rate, 3), "pass_count": f"{passed}/{counted}",
                    "difficulty": bucket(rate, args.often)}
        lines.append(query.model_copy(update={"metadata": metadata}).model_dump_json(exclude_defaults=True) + "\n")
    args.out.write_text("".join(lines))
    print(f"wrote {len(chosen)} queries to {args.out} ({', '.join(f'{k} {v}' for k, v in targets.items())})")
    print(expected_outcomes([rate for _, rate in chosen]))


if __name__ == "__main__":
    main()
