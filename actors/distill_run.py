"""A distillation run on Ray: ingest the corpus once, then stream it through each teacher, committing as it goes.

Output layout under `config.output`:
    config.json                       resolved config and its hash
    queries/                          the first valid row of each id, in the query format, in input order (written once)
    rejects/                          malformed input rows, with origin and reason
    _ingest/                          ingest's valid rows in input order, while it runs (removed when it is done)
    teachers/<name>/accepted/         samples that passed verification
    teachers/<name>/rejects/          queries the teacher never got accepted, with reason
    teachers/<name>/attempts/         every generated candidate and its verdict
    plots/response_tokens.png         response lengths of accepted samples, per teacher and category
    summary.json

Every input row ends in exactly one of `queries/` or `rejects/`, and every query in exactly one of a teacher's
`accepted/` or `rejects/`. A restarted run skips what those folders already hold, so killing the job loses at most
the rows not yet committed, which it then generates again.

Inputs and the output folder are checked before anything is claimed or Ray starts. A teacher whose rows keep ending
in request failures trips its circuit breaker (`pipeline.breaker`): it stops, with one message, without committing
the rows that tripped it, and the other teachers finish.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from actors.cluster import connect_ray
from actors.engine_pool import commit_stream, map_engine_stage
from actors.inputs import join_by_id, parsed_rows, read_parquet
from actors.teacher import TeacherStage
from actors.verifier_pool import VerifierPool
from pipeline.breaker import CircuitBreaker
from pipeline.checks import check_inputs, check_model, check_output
from pipeline.config import ConfigError, DistillConfig, TeacherConfig
from pipeline.duplicate_ids import staged_first_rows
from pipeline.engine import REQUEST_FAILURES
from pipeline.plots import LengthCounts, count_lengths, response_length_figure
from pipeline.report import teacher_yield
from pipeline.resources import plan_resources
from pipeline.schema import ATTEMPT_SCHEMA, QUERY_SCHEMA, REJECT_SCHEMA, SAMPLE_SCHEMA, Reject
from pipeline.storage import ShardWriter, Store, new_run_tag

LENGTH_PLOT = "plots/response_tokens.png"
# Ingest's valid rows numbered in input order, before duplicate ids are sorted out; removed once ingest is done.
INGEST_STAGING = "_ingest"
STAGED_QUERY_SCHEMA = pa.schema([*QUERY_SCHEMA, ("origin", pa.string()), ("position", pa.int64())])

@dataclass
class TeacherReport:
    name: str
    queries: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    mean_attempts: float = 0.0
    generated_tokens: int = 0  # this run
    total_generated_tokens: int = 0  # every run into this output, from the attempts log
    wall_s: float = 0.0  # this run, engine start included
    generation_s: float = 0.0  # this run, from the first engine ready to the last result
    stopped: str | None = None  # why the circuit breaker stopped this teacher

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.generation_s if self.generation_s else 0.0


def run_distill(config: DistillConfig, progress: bool = True, engine_class: str | None = None) -> dict[str, Any]:
    store = Store(config.output, config.storage_options)
    if not store.exists("queries", "_SUCCESS"):  # once ingested, the queries are read from the output
        check_inputs(config.input.paths, config.storage_options)
    check_output(config.output, config.storage_options)
    for i, served in enumerate(config.teachers):
        if served.engine.kind == "vllm":
            check_model(served.model, config.storage_options, f"teachers.{i}.model")
        elif served.engine.kind == "reference":
            check_inputs(served.engine.paths, config.storage_options)
    if config.judge is not None and config.judge.engine.kind == "vllm":
        check_model(config.judge.model, config.storage_options, "judge.model")
    config_hash = config.config_hash()
    store.claim(config_hash, config.model_dump(mode="json"))
    plan = plan_resources(config)
    connect_ray(config.ray, plan.local_cluster_cpus)
    print(f"[distillery] config {config_hash}; {plan.describe()}", flush=True)

    started = time.monotonic()
    # Verifiers first: a run whose verifiers cannot work on this cluster stops here, before any work.
    verifiers = VerifierPool.start(config.verifiers, config.judge)
    try:
        input_counts = ingest(config, store, config_hash, progress)
        # Teachers run side by side, each its own Ray Data pipeline over the same queries and its own dataset.
        with ThreadPoolExecutor(max_workers=len(config.teachers)) as pool:
            runs = [
                pool.submit(distill_teacher, config, teacher, store, verifiers, config_hash, progress, engine_class, i)
                for i, teacher in enumerate(config.teachers)
            ]
            reports = [run.result() for run in runs]
    finally:
        verifiers.shutdown()
    summary = {
        "config_hash": config_hash,
        "output": config.output,
        "input": input_counts,
        "teachers": [_report_dict(r) for r in reports],
        "plots": [write_length_plot(config, store)],
        "wall_s": round(time.monotonic() - started, 1),
        "stopped": [r.stopped for r in reports if r.stopped],
    }
    store.write_text("summary.json", json.dumps(summary, indent=2))
    return summary


def write_length_plot(config: DistillConfig, store: Store) -> str:
    """Response lengths of every accepted sample so far (earlier runs into this output included), per teacher and
    category, counted a shard at a time: the driver holds the counts, not the samples. Returns where the figure is."""
    counts: LengthCounts = {}
    for teacher in config.teachers:
        for shard in store.shards(f"teachers/{teacher.name}/accepted"):
            samples = pq.read_table(shard, columns=["teacher", "category", "completion_tokens"], filesystem=store.fs)
            count_lengths(samples, counts=counts)
    store.write_bytes(LENGTH_PLOT, response_length_figure(counts))
    return store.url.rstrip("/") + "/" + LENGTH_PLOT


# ---- ingest -------------------------------------------------------------------------------------------------------


def ingest(config: DistillConfig, store: Store, config_hash: str, progress: bool) -> dict[str, Any]:
    """Parse every input row once into `queries/` or `rejects/`; a completed ingest is marked and never redone.

    The driver reads the rows in input order and numbers the valid ones into `_ingest/`; which row of an id comes
    first is then decided bucket by bucket of ids (`keep_first_occurrences`), so the driver holds no set of the
    corpus's ids: its memory does not grow with the corpus. Only `input.limit` keeps the ids seen on the driver, at
    most `limit` of them, to stop reading at the limit'th distinct valid row."""
    if store.exists("queries", "_SUCCESS"):
        return json.loads(store.read_text("queries/_SUCCESS"))
    for folder in ("queries", "rejects", INGEST_STAGING):
        store.remove(folder)

    ctx = ray.data.DataContext.get_current()
    preserve = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # input order decides which row of an id is kept, and `input.limit`
    try:
        dataset = parsed_rows(config.input.paths, config.storage_options, config.input.max_row_bytes)
        tag = new_run_tag()
        staged = ShardWriter(store, INGEST_STAGING, STAGED_QUERY_SCHEMA, 4096, config.flush_seconds, tag)
        rejects = ShardWriter(store, "rejects", REJECT_SCHEMA, 4096, config.flush_seconds, tag)
        limit = config.input.limit
        limited_ids: set[str] = set()  # only with `input.limit`: at most `limit` ids
        reasons: Counter[str] = Counter()
        position = 0  # of the valid rows, in input order
        bar = tqdm(desc="ingest", unit="rows", disable=not progress)
        for row in dataset.iter_rows():
            bar.update(1)
            if row["query"] is not None:
                query = json.loads(row["query"])
                staged.add([{**query, "origin": row["origin"], "position": position}])
                position += 1
                if limit:
                    limited_ids.add(query["id"])
                    if len(limited_ids) >= limit:
                        break
                continue
            reasons[row["reason"]] += 1
            rejects.add([Reject(
                id=None, origin=row["origin"], stage="input", teacher=None, reason=row["reason"],
                detail=row["detail"], raw=row["raw"], config_hash=config_hash,
            ).model_dump(mode="json")])
        bar.close()
    finally:
        ctx.execution_options.preserve_order = preserve
    staged.flush()
    queries, duplicates = keep_first_occurrences(store, staged.rows_written, rejects, config_hash, tag, progress)
    rejects.flush()
    store.remove(INGEST_STAGING)
    if duplicates:
        reasons["duplicate_id"] = duplicates
    counts = {"queries": queries, "rejected": dict(reasons), "rows_read": queries + sum(reasons.values())}
    if not queries:
        # Not marked done: the same output folder takes the corrected input.
        raise ConfigError(
            f"input: no valid queries in {', '.join(config.input.paths)} ({counts['rows_read']} rows read, "
            f"rejected {dict(reasons)}; see {store.url.rstrip('/')}/rejects)"
        )
    store.write_text("queries/_SUCCESS", json.dumps(counts))
    return counts


def keep_first_occurrences(
    store: Store, rows: int, rejects: ShardWriter, config_hash: str, tag: str, progress: bool
) -> tuple[int, int]:
    """Each id's first staged row (the lowest `position`) goes to `queries/`, every later one to `rejects` as
    `duplicate_id`; returns (queries, duplicates). The ids are grouped bucket by bucket (`pipeline.duplicate_ids`),
    so the driver's memory follows the duplicates, not the corpus."""
    queries = duplicates = 0
    bar = tqdm(desc="ingest: first row of each id", total=rows, unit="rows", disable=not progress)
    for sequence, (first, later) in enumerate(staged_first_rows(store, INGEST_STAGING, rows)):
        if first.num_rows:
            store.write_shard("queries", f"part-{tag}-{sequence:05d}.parquet",
                              first.select(QUERY_SCHEMA.names).cast(QUERY_SCHEMA))
        rejects.add(
            Reject(
                id=row["id"], origin=row["origin"], stage="input", teacher=None, reason="duplicate_id",
                detail="an earlier row has the same id", config_hash=config_hash,
            ).model_dump(mode="json")
            for row in later.select(["id", "origin"]).to_pylist()
        )
        queries += first.num_rows
        duplicates += later.num_rows
        bar.update(first.num_rows + later.num_rows)
    bar.close()
    return queries, duplicates


# ---- distill ------------------------------------------------------------------------------------------------------


def distill_teacher(
    config: DistillConfig, teacher: TeacherConfig, store: Store, verifiers: VerifierPool, config_hash: str,
    progress: bool, engine_class: str | None = None, position: int = 0,
) -> TeacherReport:
    base = f"teachers/{teacher.name}"
    finished = store.shards(f"{base}/accepted") + store.shards(f"{base}/rejects")
    total = json.loads(store.read_text("queries/_SUCCESS"))["queries"]
    started = time.monotonic()
    tokens = 0
    generation_s = 0.0
    stopped = None
    # Each query is in at most one of those folders (a query is generated only while in neither): their rows count it.
    pending = total - sum(store.count_rows(f"{base}/{folder}") for folder in ("accepted", "rejects"))
    if pending > 0:
        fs = store.arrow_filesystem()
        dataset = read_parquet(store.path("queries"), fs)
        if finished:  # a resumed run: the queries minus those finished, by a hash join on the cluster
            finished_ids = read_parquet(finished, fs)
            dataset = join_by_id(dataset, finished_ids.select_columns(["id"]), "left_anti", total)
        dataset = map_engine_stage(
            dataset.repartition(target_num_rows_per_block=teacher.engine.batch_size), TeacherStage, teacher.engine,
            {
                "teacher": teacher.model_dump(mode="json"), "verifiers": verifiers, "config_hash": config_hash,
                "engine_class": engine_class, "storage_options": config.storage_options,
            },
        )
        tag = new_run_tag()
        attempts_log = ShardWriter(
            store, f"{base}/attempts", ATTEMPT_SCHEMA, 8 * config.shard_rows, config.flush_seconds, tag
        )
        writers = {
            kind: ShardWriter(
                store, f"{base}/{folder}", schema, config.shard_rows, config.flush_seconds, tag, [attempts_log]
            )
            for kind, folder, schema in [("sample", "accepted", SAMPLE_SCHEMA), ("reject", "rejects", REJECT_SCHEMA)]
        }
        counts: Counter[str] = Counter()

        def rows(batch: pa.Table):
            nonlocal tokens
            columns = (batch.column(name).to_pylist() for name in ("sample", "reject", "attempts"))
            for sample, reject, attempts in zip(*columns):
                row = (_json(sample), _json(reject), json.loads(attempts))
                tokens += sum(a["completion_tokens"] for a in row[2])
                yield row, row[1]["reason"] if row[1] and row[1]["reason"] in REQUEST_FAILURES else None

        def commit(row: tuple[dict | None, dict | None, list[dict]]) -> None:
            sample, reject, attempt_rows = row
            attempts_log.add(attempt_rows)
            if sample is not None:
                writers["sample"].add([sample])
                counts["accepted"] += 1
            else:
                writers["reject"].add([reject])
                counts["exhausted" if reject["reason"] == "exhausted" else "other_rejects"] += 1

        breaker: CircuitBreaker[tuple] = CircuitBreaker(
            teacher.faults.breaker_window, teacher.faults.breaker_failure_rate, pending
        )
        streamed = commit_stream(
            dataset, rows, commit, breaker,
            tqdm(total=pending, desc=f"distill[{teacher.name}]", unit="queries", position=position,
                 disable=not progress),
            lambda generating: {**counts, "done_tok_s": f"{tokens / generating:.0f}"},
        )
        generation_s = streamed.generation_s
        if streamed.tripped_on is not None:
            stopped = stop_message(teacher.name, breaker, streamed.tripped_on[1])
            print(f"\n[distillery] {stopped}", file=sys.stderr, flush=True)
        for writer in [*writers.values(), attempts_log]:
            writer.flush()
    report = _teacher_report(store, teacher.name, total, tokens, time.monotonic() - started, generation_s)
    report.stopped = stopped
    return report


def _json(value: str | None) -> dict | None:
    return None if value is None else json.loads(value)


def stop_message(teacher: str, breaker: CircuitBreaker, last_reject: dict) -> str:
    return (
        f"teacher {teacher} stopped: {breaker.describe()}; the last: {last_reject['detail'][:300]}. "
        "Those rows are not committed: fix the endpoint (base_url, api_key_env, model) and run the same command "
        "again to continue."
    )


def _teacher_report(
    store: Store, name: str, total: int, tokens: int, wall_s: float, generation_s: float
) -> TeacherReport:
    """Counts come from what is committed, so a resumed run reports the whole dataset, not just its own share. Only
    the columns they need are read: a few bytes a row, where whole rows would grow the driver with the run."""
    base = f"teachers/{name}"

    def read(folder: str, schema: pa.Schema, columns: list[str]) -> pa.Table:
        table = store.read_table(f"{base}/{folder}", columns=columns)
        return schema.empty_table().select(columns) if table is None else table

    counts = teacher_yield(
        total, read("accepted", SAMPLE_SCHEMA, ["attempts"]), read("rejects", REJECT_SCHEMA, ["reason", "attempts"]),
        read("attempts", ATTEMPT_SCHEMA, ["completion_tokens"]),
    )
    return TeacherReport(
        name=name,
        queries=total,
        accepted=counts.accepted,
        rejected=counts.rejected,
        mean_attempts=counts.mean_attempts,
        generated_tokens=tokens,
        total_generated_tokens=counts.generated_tokens,
        wall_s=wall_s,
        generation_s=generation_s,
    )


def _report_dict(report: TeacherReport) -> dict[str, Any]:
    return {
        "teacher": report.name,
        "queries": report.queries,
        "accepted": report.accepted,
        "acceptance_rate": round(report.accepted / report.queries, 4) if report.queries else 0.0,
        "rejected": report.rejected,
        "mean_attempts": round(report.mean_attempts, 2),
        "generated_tokens": report.generated_tokens,
        "tokens_per_accepted": round(report.total_generated_tokens / report.accepted) if report.accepted else None,
        "tokens_per_s": round(report.tokens_per_s, 1),
        "generation_s": round(report.generation_s, 1),
        "wall_s": round(report.wall_s, 1),
        "stopped": report.stopped,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"distillery summary  (config {summary['config_hash']}, output {summary['output']})"]
    inp = summary["input"]
    lines.append(f"  input: {inp['rows_read']} rows read, {inp['queries']} queries, rejected {inp['rejected'] or {}}")
    for t in summary["teachers"]:
        lines.append(
            f"  teacher {t['teacher']}: {t['queries']} queries, {t['accepted']} accepted "
            f"({100 * t['acceptance_rate']:.1f}%), failed by reason {t['rejected'] or {}}, "
            f"mean attempts {t['mean_attempts']}, {t['generated_tokens']} tokens "
            f"({t['tokens_per_accepted']} per accepted) at {t['tokens_per_s']} tok/s, {t['wall_s']} s"
        )
    for message in summary["stopped"]:
        lines.append(f"  STOPPED: {message}")
    lines.append(f"  plots: {', '.join(summary['plots'])}")
    lines.append(f"  wall time: {summary['wall_s']} s")
    return "\n".join(lines)
