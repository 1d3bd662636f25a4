"""`jobs.verify` on Ray: read responses, score them on a pool of verifier actors, write them back in input order."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from actors.distill_run import connect_ray
from actors.inputs import read_raw_rows
from actors.verify_stage import VerifyStage
from pipeline.config import VerifyJobConfig
from pipeline.resources import local_cluster_cpus
from pipeline.storage import filesystem
from pipeline.verifiers.audit import output_record


def run_verify(inputs: list[str], output: str, config: VerifyJobConfig, progress: bool = True) -> dict[str, Any]:
    connect_ray(config.ray, local_cluster_cpus(config.verifiers.replicas * config.verifiers.num_cpus, config.ray))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows line up with input rows
    dataset = read_raw_rows(inputs, config.storage_options).map_batches(
        VerifyStage,
        fn_constructor_kwargs={"config": config.model_dump(mode="json")},
        batch_size=16,
        compute=ray.data.ActorPoolStrategy(size=config.verifiers.replicas),
        num_cpus=config.verifiers.num_cpus,
        max_restarts=-1,
        max_task_retries=-1,
    )
    failures: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    out_fs, out_path = filesystem(output, config.storage_options)
    jsonl = out_fs.open(out_path, "w") if not output.endswith(".parquet") else None
    bar = tqdm(desc="verify", unit="rows", disable=not progress)
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            record = output_record(row)
            failures[json.loads(row["verify_details"])["failure"] or "passed"] += 1
            if jsonl is not None:
                jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                rows.append(record)
        bar.update(batch.num_rows)
    bar.close()
    if jsonl is not None:
        jsonl.close()
    else:
        pq.write_table(pa.Table.from_pylist(rows), out_path, filesystem=out_fs)
    return {"rows": sum(failures.values()), "outcomes": dict(failures), "output": output}
