"""Training data: accepted samples tokenized once with the student's chat template (Ray Data, on the cluster), then
copied once to each node's disk, where every training worker on the node maps it.

Layout under the run's output:
    tokenized/source=<name>/       id, input_ids, assistant_mask, error (pipeline.packing.TOKENIZED_SCHEMA)
    tokenized/_SUCCESS             the input files each source was made from
and on each node, `DISTILLERY_CACHE/tokenized/<key>/`: the flat arrays of `pipeline.packing.TokenizedSamples`.

A finished tokenization is reused by a resumed run; one whose inputs have changed since is refused, since the run's
data order (and so its checkpoints) would no longer match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipeline.config import ConfigError, TrainConfig, TrainSourceConfig
from pipeline.models import cache_dir, resolve_tokenizer
from pipeline.packing import TOKENIZED_SCHEMA, TokenizedSamples, tokenize_conversation
from pipeline.resources import INGEST_CPUS_PER_TASK
from pipeline.storage import Store, arrow_filesystem, data_files, filesystem
from pipeline.train_plan import Source, trainable


@cache
def cached_tokenizer(model: str, storage_options_json: str) -> Any:
    """One tokenizer per worker process, model and storage options (as JSON, to be hashable): Ray reuses task
    processes, so it loads once per process. Of a remote model only the tokenizer files are downloaded."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer(model, json.loads(storage_options_json)))


def tokenize_batch(batch: pa.Table, model: str, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """Ray Data UDF: accepted-sample rows to token ids and assistant masks, keeping the `source` column. A row whose
    messages cannot be rendered keeps its id, with empty token lists and the reason in `error`: it is counted and
    left out of training, and the other rows proceed."""
    options_json = json.dumps(storage_options or {}, sort_keys=True)
    ids, masks, errors = [], [], []
    for messages in batch.column("messages").to_pylist():
        try:
            input_ids, mask = tokenize_conversation(cached_tokenizer(model, options_json), messages)
            error = None
        except Exception as err:  # noqa: BLE001 - any template or data error of one row; the row carries it
            input_ids, mask, error = [], [], f"{type(err).__name__}: {err}"[:500]
        ids.append(input_ids)
        masks.append(mask)
        errors.append(error)
    tokenized = pa.Table.from_arrays(
        [batch.column("id"), pa.array(ids, pa.list_(pa.int32())), pa.array(masks, pa.list_(pa.bool_())),
         pa.array(errors, pa.string())],
        schema=TOKENIZED_SCHEMA,
    )
    return tokenized.append_column("source", batch.column("source"))


def source_files(source: TrainSourceConfig, storage_options: dict[str, Any]) -> list[str]:
    """The source's Parquet files (`pipeline.storage.data_files`), sorted and without the protocol."""
    fs, path = filesystem(source.path, storage_options)
    paths = [f for f in data_files(fs, path) if f.endswith(".parquet")]
    if not paths:
        raise ConfigError(f"data.sources.{source.name}: no Parquet files at {source.path}")
    return paths


def input_files(config: TrainConfig) -> dict[str, list[str]]:
    """Every source's files, listed before anything starts: a missing source fails the run at once."""
    return {s.name: source_files(s, config.storage_options) for s in config.data.sources}


def tokenize_sources(config: TrainConfig, store: Store, inputs: dict[str, list[str]]) -> None:
    """Tokenize every source into `tokenized/source=<name>/`, once."""
    if store.exists("tokenized", "_SUCCESS"):
        if json.loads(store.read_text("tokenized/_SUCCESS"))["inputs"] != inputs:
            raise ConfigError(f"output: {config.output} was tokenized from other input files; use a new output folder")
        return
    store.remove("tokenized")
    # One pipeline for all sources: every Ray Data operator costs seconds to start.
    datasets = []
    for source in config.data.sources:
        fs, _ = filesystem(source.path, config.storage_options)
        datasets.append(ray.data.read_parquet(
            inputs[source.name], filesystem=arrow_filesystem(fs), num_cpus=INGEST_CPUS_PER_TASK,
        ).select_columns(["id", "messages"]).add_column(
            "source", lambda batch, name=source.name: pa.array([name] * batch.num_rows), batch_format="pyarrow",
            num_cpus=INGEST_CPUS_PER_TASK,
        ))
    dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    dataset.map_batches(
        tokenize_batch, fn_kwargs={"model": config.model, "storage_options": config.storage_options},
        batch_format="pyarrow", num_cpus=INGEST_CPUS_PER_TASK,
    ).write_parquet(store.path("tokenized"), filesystem=store.arrow_filesystem(), partition_cols=["source"])
    check_tokenized(config, store)
    store.write_text("tokenized/_SUCCESS", json.dumps({"inputs": inputs}, indent=2))


def check_tokenized(config: TrainConfig, store: Store) -> None:
    """Report the rows that could not be tokenized; a source with no usable row at all is an error (a chat template
    the tokenizer cannot apply, say), named with its first reason."""
    for source in config.data.sources:
        table = store.read_table(f"tokenized/source={source.name}", columns=["id", "error"])
        if table is None:
            continue
        failed = table.filter(pc.is_valid(table.column("error")))
        if not failed.num_rows:
            continue
        example = failed.slice(0, 1).to_pylist()[0]
        message = (f"data.sources.{source.name}: {failed.num_rows} of {table.num_rows} samples could not be "
                   f"tokenized, e.g. {example['id']}: {example['error']}")
        if failed.num_rows == table.num_rows:
            raise ConfigError(message)
        print(f"[train] {message}; they are left out", flush=True)


def load_training_data(
    config: TrainConfig, store: Store, local_leader: bool, barrier: Callable[[], None]
) -> tuple[TokenizedSamples, list[Source], dict[str, dict[str, int]]]:
    """Every source's tokenized samples, each sorted by id so that the order never depends on how files were
    written; the samples that cannot be trained on are left out of the sources and counted by reason.

    One rank per node (`local_leader`) reads them from storage into `.npy` files on the node's disk, once per run;
    every rank then maps those files, so a node holds one copy however many ranks it runs. Every rank must call
    this: `barrier` waits for the leaders."""
    directory = local_copy_dir(config, store)
    if local_leader and not (directory / "rows.json").exists():
        _write_local_copy(config, store, directory)
    barrier()
    samples = TokenizedSamples.load(directory)
    rows = json.loads((directory / "rows.json").read_text())
    sources, counts = [], {}
    start = 0
    for source in config.data.sources:
        indices = np.arange(start, start + rows[source.name])
        start += rows[source.name]
        kept, dropped = trainable(
            source.name, indices, samples.lengths, samples.target_tokens, config.data.max_seq_len, source.weight
        )
        sources.append(kept)
        counts[source.name] = {"samples": rows[source.name], "kept": len(kept.indices), **dropped}
    return samples, sources, counts


def local_copy_dir(config: TrainConfig, store: Store) -> Path:
    """This run's copy on this node; the run's local leaders remove it when training ends."""
    success = store.read_text("tokenized/_SUCCESS")
    key = hashlib.sha256(f"{store.url}\n{config.config_hash()}\n{success}".encode()).hexdigest()[:16]
    return cache_dir() / "tokenized" / key


def _write_local_copy(config: TrainConfig, store: Store, directory: Path) -> None:
    """The arrays, then `rows.json` (samples per source, in config order) last: its presence marks a whole copy."""
    tables = []
    for source in config.data.sources:
        table = store.read_table(f"tokenized/source={source.name}", columns=TOKENIZED_SCHEMA.names)
        tables.append(table.sort_by("id") if table is not None else TOKENIZED_SCHEMA.empty_table())
    staging = directory.with_name(f"{directory.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    TokenizedSamples.from_arrow(pa.concat_tables(tables)).save(staging)
    (staging / "rows.json").write_text(json.dumps({s.name: t.num_rows for s, t in zip(config.data.sources, tables)}))
    shutil.rmtree(directory, ignore_errors=True)  # an incomplete copy from a killed run
    staging.rename(directory)
