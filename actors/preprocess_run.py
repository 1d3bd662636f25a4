"""`jobs.preprocess` on Ray Data: filter, deduplicate and decontaminate a query corpus.

Output layout under the output folder:
    config.json     resolved config, its hash, the inputs and the benchmark items per benchmark file
    kept/           queries that passed every step, as written (QUERY_SCHEMA): input for `jobs.distill`
    rejects/        every other input row, with its reason (PREPROCESS_REJECT_SCHEMA)
    summary.json    counts per reason, per source, per benchmark file and per step; comes last, so it marks a
                    complete run

A run writes all of it under `_staging/<run tag>/` and only then replaces the previous run's files with it, so a
run that fails or is killed leaves the previous output as it was. Readers skip `_`-prefixed folders, and the next
run that completes removes the staging folders killed runs left behind.

Steps (pure code in `pipeline/preprocess/`), each reading the previous step's output and committing its own whole
under `_staging/<run tag>/steps/<step>/` with a `_SUCCESS` marker (`pipeline.preprocess.resume`): parse + normalize +
filter; exact duplicates by a shuffle into hash partitions of the match key; near duplicates by LSH buckets shuffled
the same way, then union-find over the verified candidate pairs on the driver (only candidates travel there);
decontamination by exact and n-gram lookups on CPU workers; then by embeddings on the embedding actor pool. A run
continues the unfinished run that holds the most of its steps (same inputs and settings): a killed run loses only
the step it was in, and a changed setting recomputes from the first step that depends on it.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from actors.cluster import connect_ray
from actors.embedding_stage import EmbeddingStage
from actors.inputs import read_raw_rows
from pipeline.config import DedupConfig, PreprocessConfig
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.decontaminate import BenchmarkIndex
from pipeline.preprocess.dedup import near_duplicates
from pipeline.preprocess.resume import (
    StepMarker,
    choose_staging,
    commit_marker,
    input_files,
    plan_steps,
    staged_markers,
    step_folder,
    step_settings,
)
from pipeline.preprocess.steps import (
    Verdict,
    band_rows,
    candidate_pairs,
    mark_benchmark_matches,
    mark_by_rank,
    mark_exact_duplicates,
    prepare_batch,
    signatures_of,
)
from pipeline.resources import INGEST_CPUS_PER_TASK, local_cluster_cpus, pool_range
from pipeline.schema import PREPROCESS_REJECT_SCHEMA, QUERY_SCHEMA
from pipeline.storage import Store, new_run_tag, replace_with

_LIGHT = {"num_cpus": INGEST_CPUS_PER_TASK, "batch_format": "pyarrow"}


def run_preprocess(
    inputs: list[str], output: str, config: PreprocessConfig, benchmarks: dict[str, list[BenchmarkItem]],
    progress: bool = True,
) -> dict[str, Any]:
    """`benchmarks`: the items per benchmark file, from `pipeline.preprocess.preflight`, which checked the rest."""
    started = time.monotonic()
    items = [item for file_items in benchmarks.values() for item in file_items]
    benchmark_items = {path: len(file_items) for path, file_items in benchmarks.items()}
    store = Store(output, config.storage_options)
    plan = plan_steps(step_settings(config, input_files(inputs, config.storage_options), benchmarks))
    runs = staged_markers(store)
    tag, reusable = choose_staging(plan, runs)
    tag = tag or new_run_tag()
    staging = f"_staging/{tag}"
    for step in plan[reusable:]:  # a killed step's partial output, or one computed with other settings
        store.remove(step_folder(staging, step.name))
    embedding = config.decontamination.embedding
    embedding_cpus = embedding.num_cpus * pool_range(embedding)[1] if embedding else 0.0
    connect_ray(config.ray, local_cluster_cpus(embedding_cpus, config.ray))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    # The two groupbys shuffle by sorting, in tasks: Ray Data's default shuffle starts aggregator actors for each,
    # a fixed cost that dominated small runs (exact dedup of 3 rows took 10.1 s, 4.3 s sorted; the run 49 s, 36 s).
    # Either way a partition is `dedup.partitions`' share of the corpus.
    ctx.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    config_hash = config.config_hash()
    store.write_text(f"{staging}/config.json", json.dumps({
        "config_hash": config_hash, "inputs": inputs, "benchmark_items": benchmark_items,
        "config": config.model_dump(mode="json"),
    }, indent=2))

    compute: dict[str, Callable[[ray.data.Dataset], ray.data.Dataset]] = {
        "parse_filter": lambda _: read_raw_rows(inputs, config.storage_options, config.max_row_bytes).map_batches(
            prepare_batch, fn_kwargs={"inputs": inputs, "config": config}, **_LIGHT
        ),
        "exact_dedup": lambda stream: stream.groupby("partition", num_partitions=config.dedup.partitions).map_groups(
            mark_exact_duplicates, **_LIGHT
        ),
        "near_dedup": lambda stream: stream.map_batches(
            mark_by_rank, fn_kwargs={"verdicts": near_duplicate_verdicts(stream, config.dedup)}, **_LIGHT
        ),
        "decontaminate": lambda stream: stream.map_batches(mark_benchmark_matches, fn_kwargs={"index": BenchmarkIndex(
            items, config.decontamination.ngram_size, config.decontamination.ngram_threshold
        )}, **_LIGHT),
        "embedding": lambda stream: stream.map_batches(
            EmbeddingStage,
            fn_constructor_kwargs={"items": items, "config": embedding},
            batch_size=embedding.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=pool_range(embedding)[0], max_size=pool_range(embedding)[1]),
            num_cpus=embedding.num_cpus,
            num_gpus=embedding.num_gpus,
        ),
    }
    steps: dict[str, dict[str, Any]] = {}
    previous: StepMarker | None = None
    stream: ray.data.Dataset | None = None
    for number, step in enumerate(plan, start=1):
        folder = step_folder(staging, step.name)
        heading = f"step {number}/{len(plan)} {step.name}"
        if number <= reusable:
            marker = runs[tag][step.name]
            status = "reused"
            print(f"{heading}: reused from {staging} ({marker.rows} rows, committed {marker.committed_at})",
                  flush=True)
        else:
            print(f"{heading}: computing", flush=True)
            step_started = time.monotonic()
            compute[step.name](stream).write_parquet(store.path(folder), filesystem=store.arrow_filesystem())
            marker = StepMarker(step.name, step.hash, open_or_rejected(store, folder),
                                round(time.monotonic() - step_started, 1),
                                datetime.now(timezone.utc).isoformat(timespec="seconds"))
            commit_marker(store, staging, marker, config.storage_options)
            status = "computed"
            print(f"{heading}: computed in {marker.seconds} s ({marker.rows} rows)", flush=True)
        steps[step.name] = {"status": status, **step_report(marker, previous)}
        previous = marker
        stream = _dataset(store, folder)

    step_started = time.monotonic()
    for name in ("kept", "rejects"):  # left by a run killed while writing them
        store.remove(f"{staging}/{name}")
    write_outputs(stream, store, staging, config_hash)
    summary = {
        "config_hash": config_hash,
        "output": output,
        "benchmark_items": benchmark_items,
        **count_outcomes(stream),
        "steps": steps,
        "write_s": round(time.monotonic() - step_started, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }
    store.write_text(f"{staging}/summary.json", json.dumps(summary, indent=2))
    replace_with(store, staging, ["config.json", "kept", "rejects", "summary.json"])
    store.remove("_staging")  # this run's, now empty, and any a killed run left
    return summary


def step_report(marker: StepMarker, previous: StepMarker | None) -> dict[str, Any]:
    """A step's rows, the rejects it added per reason, and the seconds and time of the run that computed it."""
    before = previous.outcomes if previous else {}
    added = {reason: n - before.get(reason, 0) for reason, n in marker.outcomes.items() if reason != "open"}
    return {"rows": marker.rows, "rejected": {reason: n for reason, n in added.items() if n},
            "seconds": marker.seconds, "committed_at": marker.committed_at}


def open_or_rejected(store: Store, folder: str) -> dict[str, int]:
    """Rows per reason in a step's output; `open` for rows no step has rejected yet. One column, read on the driver:
    a Ray Data pass would cost more in scheduling than the read."""
    counts = pc.value_counts(store.read_table(folder, columns=["reason"]).column("reason")).to_pylist()
    return dict(sorted((entry["values"] or "open", entry["counts"]) for entry in counts))


def _dataset(store: Store, folder: str) -> ray.data.Dataset:
    store.fs.invalidate_cache()  # Ray's workers wrote the folder, not this process's filesystem object
    # No hive partitioning: an output path such as `s3://bucket/run=3/` must not turn into a column.
    return ray.data.read_parquet(store.path(folder), filesystem=store.arrow_filesystem(), partitioning=None,
                                 num_cpus=INGEST_CPUS_PER_TASK)


def near_duplicate_verdicts(stream: ray.data.Dataset, dedup: DedupConfig) -> dict[str, Verdict]:
    """Rank → `duplicate_near` verdict. Only candidate pairs and their signatures come to the driver."""
    near = dedup.near
    bands = stream.map_batches(band_rows, fn_kwargs={"config": near, "partitions": dedup.partitions}, **_LIGHT)
    pairs_ds = bands.groupby("partition", num_partitions=dedup.partitions).map_groups(candidate_pairs, **_LIGHT)
    pairs = sorted({
        pair for batch in pairs_ds.iter_batches(batch_format="pyarrow")
        for pair in zip(batch.column("a").to_pylist(), batch.column("b").to_pylist())
    })
    if not pairs:
        return {}
    candidates = {row for pair in pairs for row in pair}
    rows = [
        row for batch in stream.map_batches(signatures_of, fn_kwargs={"ranks": candidates}, **_LIGHT).iter_batches(
            batch_format="pyarrow"
        ) for row in batch.to_pylist()
    ]
    signatures = {row["rank"]: np.frombuffer(row["signature"], dtype=np.uint32) for row in rows}
    queries = {row["rank"]: (row["id"], row["source"]) for row in rows}
    return {
        member: Verdict("duplicate_near", "same numbers, estimated Jaccard similarity of n-grams with a kept query",
                        *queries[representative], similarity)
        for member, (representative, similarity) in near_duplicates(pairs, signatures, near.threshold).items()
    }


def write_outputs(stream: ray.data.Dataset, store: Store, folder: str, config_hash: str) -> None:
    filesystem_ = store.arrow_filesystem()
    stream.map_batches(_kept, **_LIGHT).write_parquet(store.path(folder, "kept"), filesystem=filesystem_)
    stream.map_batches(_rejects, fn_kwargs={"config_hash": config_hash}, **_LIGHT).write_parquet(
        store.path(folder, "rejects"), filesystem=filesystem_
    )


def _kept(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch.column("reason"))).select(QUERY_SCHEMA.names).cast(QUERY_SCHEMA)


def _rejects(batch: pa.Table, config_hash: str) -> pa.Table:
    rejected = batch.filter(pc.is_valid(batch.column("reason")))
    stamp = pa.array([config_hash] * rejected.num_rows, type=pa.string())
    return rejected.select(PREPROCESS_REJECT_SCHEMA.names[:-1]).append_column("config_hash", stamp).cast(
        PREPROCESS_REJECT_SCHEMA
    )


def count_outcomes(stream: ray.data.Dataset) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    by_benchmark: dict[str, Counter[str]] = defaultdict(Counter)
    for batch in stream.select_columns(["reason", "source", "matched_source"]).iter_batches(batch_format="pyarrow"):
        for reason, source, matched in zip(*(batch.column(c).to_pylist() for c in batch.column_names)):
            outcome = reason or "kept"
            by_reason[outcome] += 1
            by_source[source][outcome] += 1
            if outcome.startswith("contaminated_"):
                by_benchmark[matched][outcome] += 1
    return {
        "rows_read": sum(by_reason.values()),
        "kept": by_reason["kept"],
        "rejected": {reason: n for reason, n in sorted(by_reason.items()) if reason != "kept"},
        "by_source": {source: dict(sorted(c.items())) for source, c in sorted(by_source.items())},
        "contaminated_by_benchmark": {source: dict(sorted(c.items())) for source, c in sorted(by_benchmark.items())},
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"preprocess summary  (config {summary['config_hash']}, output {summary['output']})"]
    lines.append(f"  {summary['rows_read']} rows read, {summary['kept']} kept")
    lines += [f"  benchmark {path}: {n} items" for path, n in summary["benchmark_items"].items()]
    if not summary["benchmark_items"]:
        lines.append("  benchmarks: none, 0 items (`--benchmarks none`: no query was checked against a benchmark)")
    lines += [f"  rejected {reason}: {n}" for reason, n in summary["rejected"].items()]
    for source, outcomes in summary["by_source"].items():
        lines.append(f"  source {source}: " + ", ".join(f"{outcome} {n}" for outcome, n in outcomes.items()))
    for benchmark, outcomes in summary["contaminated_by_benchmark"].items():
        lines.append(f"  matched benchmark {benchmark}: " + ", ".join(f"{r} {n}" for r, n in outcomes.items()))
    for number, (step, report) in enumerate(summary["steps"].items(), start=1):
        rejected = ", ".join(f"{reason} {n}" for reason, n in report["rejected"].items()) or "none"
        lines.append(f"  step {number} {step}: {report['status']} (computed in {report['seconds']} s at "
                     f"{report['committed_at']}), {report['rows']} rows, rejected {rejected}")
    lines.append(f"  wall time: {summary['wall_s']} s (writing kept/ and rejects/ {summary['write_s']} s)")
    return "\n".join(lines)
