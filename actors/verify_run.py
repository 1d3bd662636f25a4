"""`jobs.verify` on Ray: read responses, score them on the verifier pool, write them back in input order.

The paths are checked before Ray starts, and the output appears whole or not at all: a bad path or a failed write
never leaves a partial file, nor costs the scoring of every row first.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from actors.cluster import connect_ray
from actors.inputs import attempts_log_run, read_attempts_log, read_raw_rows
from actors.verifier_pool import VerifierPool
from actors.verify_stage import VerifyStage
from pipeline.checks import check_inputs, check_output_file
from pipeline.config import ConfigError, VerifyJobConfig
from pipeline.resources import plan_resources
from pipeline.storage import atomic_output
from pipeline.verifiers.audit import output_record

# Rows per request wave: enough to keep every checker and the judge's batching busy.
BATCH_ROWS = 64
# Parquet output is written in row groups of this many rows, so no more than that is held in memory.
ROW_GROUP_ROWS = 4096


def run_verify(inputs: list[str], output: str, config: VerifyJobConfig, progress: bool = True) -> dict[str, Any]:
    # Bad paths cost nothing: they are refused before Ray starts, not after every row is scored.
    check_inputs(inputs, config.storage_options)
    check_output_file(output, config.storage_options)
    logs = {path: attempts_log_run(path, config.storage_options) for path in inputs}
    response_format = _response_format(config, logs)
    plan = plan_resources(config)
    connect_ray(config.ray, plan.local_cluster_cpus)
    print(f"[distillery] {plan.describe()}", flush=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows line up with input rows
    verifiers = VerifierPool.start(config.verifiers, config.judge)
    try:
        parts = [read_raw_rows([path], config.storage_options) if log is None else read_attempts_log(*log)
                 for path, log in logs.items()]
        dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        dataset = dataset.map_batches(
            VerifyStage,
            fn_constructor_kwargs={"verifiers": verifiers, "response_format": response_format},
            batch_size=BATCH_ROWS,
            # Ray Data restarts the stage's actor and retries its batches by itself.
            compute=ray.data.ActorPoolStrategy(
                size=1, max_tasks_in_flight_per_actor=4, max_concurrent_calls_per_actor=4
            ),
            num_cpus=0.25,
        )
        outcomes = _write(dataset, output, config, progress)
    finally:
        verifiers.shutdown()
    return {"rows": sum(outcomes.values()), "outcomes": dict(outcomes), "output": output}


def _response_format(config: VerifyJobConfig, logs: dict[str, tuple | None]) -> str:
    """Candidates in an attempts log are in their teacher's format, which the run's config records; other inputs are
    in the config's. One job reads one format."""
    formats = set()
    for run, teacher in filter(None, logs.values()):
        teachers = json.loads(run.read_text("config.json"))["config"]["teachers"]
        formats |= {t.get("response_format", "think_answer") for t in teachers if t["name"] == teacher}
    if not formats:
        return config.response_format
    if None in logs.values() or "response_format" in config.model_fields_set:
        formats.add(config.response_format)
    if len(formats) > 1:
        raise ConfigError(
            f"input: one job reads one response format, and these inputs (attempts logs, with their teachers' "
            f"formats, beside other inputs or the config's `response_format`) hold {sorted(formats)}: verify them in "
            "separate runs"
        )
    return formats.pop()


def _write(dataset: ray.data.Dataset, output: str, config: VerifyJobConfig, progress: bool) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    bar = tqdm(desc="verify", unit="rows", disable=not progress)

    def records() -> Iterator[dict[str, Any]]:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                outcomes[json.loads(row["verify_details"])["failure"] or "passed"] += 1
                yield output_record(row)
            bar.update(batch.num_rows)

    write_records(records(), output, config.storage_options)
    bar.close()
    return outcomes


def write_records(records: Iterable[dict[str, Any]], output: str, storage_options: dict[str, Any]) -> None:
    """Every record to `output`, Parquet when its name ends in `.parquet` and JSONL otherwise, or nothing at all: the
    file appears whole when the last record is written (`pipeline.storage.atomic_output`)."""
    with atomic_output(output, storage_options) as local:
        if not output.endswith(".parquet"):
            with open(local, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            return
        with tempfile.TemporaryDirectory() as staging:
            sink = _ParquetSink(staging)
            for record in records:
                sink.write(record)
            sink.finish(local)


class _ParquetSink:
    """Rows to one Parquet file without holding them all: groups are staged on local disk, each with the schema its
    rows imply, then merged under one schema that fits them all (input rows may differ in their fields)."""

    def __init__(self, staging: str):
        self._staging = staging
        self._parts: list[str] = []
        self._pending: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self._pending.append(record)
        if len(self._pending) >= ROW_GROUP_ROWS:
            self._stage()

    def _stage(self) -> None:
        path = f"{self._staging}/part-{len(self._parts):06d}.parquet"
        pq.write_table(pa.Table.from_pylist(self._pending), path)
        self._parts.append(path)
        self._pending.clear()

    def finish(self, out_path: str) -> None:
        if self._pending or not self._parts:
            self._stage()
        schema = pa.unify_schemas([pq.read_schema(p) for p in self._parts], promote_options="permissive")
        with pq.ParquetWriter(out_path, schema) as writer:
            for part in self._parts:
                table = pq.read_table(part)
                present = set(table.column_names)
                columns = [
                    table.column(f.name).cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
                    for f in schema
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
