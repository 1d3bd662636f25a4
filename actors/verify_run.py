"""`jobs.verify` on Ray: read responses, score them on the verifier pool, write them back in input order."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from actors.cluster import connect_ray
from actors.inputs import read_raw_rows
from actors.verifier_pool import VerifierPool
from actors.verify_stage import VerifyStage
from pipeline.config import VerifyJobConfig
from pipeline.resources import plan_resources
from pipeline.storage import filesystem
from pipeline.verifiers.audit import output_record

# Rows per request wave: enough to keep every checker and the judge's batching busy.
BATCH_ROWS = 64
# Parquet output is written in row groups of this many rows, so no more than that is held in memory.
ROW_GROUP_ROWS = 4096


def run_verify(inputs: list[str], output: str, config: VerifyJobConfig, progress: bool = True) -> dict[str, Any]:
    plan = plan_resources(config)
    connect_ray(config.ray, plan.local_cluster_cpus)
    print(f"[distillery] {plan.describe()}", flush=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows line up with input rows
    verifiers = VerifierPool.start(config.verifiers, config.judge)
    try:
        dataset = read_raw_rows(inputs, config.storage_options).map_batches(
            VerifyStage,
            fn_constructor_kwargs={"verifiers": verifiers, "response_format": config.response_format},
            batch_size=BATCH_ROWS,
            compute=ray.data.ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=4),
            num_cpus=0.25,
            max_concurrency=4,
            max_restarts=-1,
            max_task_retries=-1,
        )
        outcomes = _write(dataset, output, config, progress)
    finally:
        verifiers.shutdown()
    return {"rows": sum(outcomes.values()), "outcomes": dict(outcomes), "output": output}


def _write(dataset: ray.data.Dataset, output: str, config: VerifyJobConfig, progress: bool) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    out_fs, out_path = filesystem(output, config.storage_options)
    bar = tqdm(desc="verify", unit="rows", disable=not progress)
    with tempfile.TemporaryDirectory() as staging:
        sink = _ParquetSink(staging) if output.endswith(".parquet") else out_fs.open(out_path, "w")
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                outcomes[json.loads(row["verify_details"])["failure"] or "passed"] += 1
                record = output_record(row)
                sink.write(record if isinstance(sink, _ParquetSink) else json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(batch.num_rows)
        if isinstance(sink, _ParquetSink):
            sink.finish(out_path, out_fs)
        else:
            sink.close()
    bar.close()
    return outcomes


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

    def finish(self, out_path: str, out_fs) -> None:
        if self._pending or not self._parts:
            self._stage()
        schema = pa.unify_schemas([pq.read_schema(p) for p in self._parts], promote_options="permissive")
        with pq.ParquetWriter(out_path, schema, filesystem=out_fs) as writer:
            for part in self._parts:
                table = pq.read_table(part)
                present = set(table.column_names)
                columns = [
                    table.column(f.name).cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
                    for f in schema
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
