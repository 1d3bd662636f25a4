"""The preprocessing steps as functions over Arrow batches of the stream, for a runner to distribute.

Every input row becomes exactly one stream row (`prepare_batch`). Each later step only gives a `reason` to rows that
have none yet, and never drops a row, so every input row reaches `kept/` or `rejects/`, and the first step that
rejects a row names the reason. Steps that must see all rows with one key (exact duplicates, LSH buckets) take one
hash partition at a time. Must never import Ray.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import NearDedupConfig, PreprocessConfig
from pipeline.loaders import RowError, parse_raw_row
from pipeline.preprocess.decontaminate import BenchmarkIndex, Contamination
from pipeline.preprocess.dedup import MinHasher, bucket_pairs, exact_duplicates, rank
from pipeline.preprocess.filters import QueryText, first_failure
from pipeline.preprocess.normalize import match_key, normalize
from pipeline.schema import PREPROCESS_REJECT_SCHEMA

# The rejects' columns (the query's, then why it was dropped) without the run's config hash, plus working columns.
STREAM_SCHEMA = pa.schema(
    [f for f in PREPROCESS_REJECT_SCHEMA if f.name != "config_hash"]
    + [
        pa.field("rank", pa.string()),  # input order, unique (see `dedup.rank`)
        pa.field("text", pa.string()),  # normalized user turns
        pa.field("key", pa.string()),  # match key
        pa.field("partition", pa.int64()),  # hash partition of the key
        pa.field("signature", pa.binary()),  # MinHash signature (uint32 values); null without shingles
    ]
)
_VERDICT_COLUMNS = ("reason", "detail", "matched_id", "matched_source", "similarity")


@dataclass(frozen=True)
class Verdict:
    reason: str
    detail: str
    matched_id: str | None = None
    matched_source: str | None = None
    similarity: float | None = None


def with_verdicts(batch: pa.Table, verdicts: dict[int, Verdict]) -> pa.Table:
    """The batch with `verdicts` (row index → verdict) filled in; other rows keep theirs."""
    if not verdicts:
        return batch
    for name in _VERDICT_COLUMNS:
        values = batch.column(name).to_pylist()
        for i, verdict in verdicts.items():
            values[i] = getattr(verdict, name)
        field = batch.schema.field(name)
        batch = batch.set_column(batch.schema.get_field_index(name), field, pa.array(values, type=field.type))
    return batch


def open_rows(batch: pa.Table) -> list[int]:
    """Indices of the rows no step has rejected yet."""
    return [i for i, reason in enumerate(batch.column("reason").to_pylist()) if reason is None]


def _column(batch: pa.Table, name: str) -> list[Any]:
    return batch.column(name).to_pylist()


# ---- 1. parse, normalize, filter ----------------------------------------------------------------------------------


def partition_of(value: str, partitions: int) -> int:
    """A stable hash partition (Python's `hash` of a string differs between processes)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little") % partitions


def input_position(origin: str, inputs: list[str]) -> tuple[int, int]:
    """(index of the input, line) from an origin: `path:line` for JSONL; `path#row` for Parquet, whose rows carry no
    line number (0), so they are ordered by id. A file read from an input folder belongs to that folder."""
    path, _, line = origin.rpartition(":")
    if not line.isdigit():
        path, line = origin.removesuffix("#row"), "0"
    for index, given in enumerate(inputs):
        if path == given or path.startswith(given.rstrip("/") + "/"):
            return index, int(line)
    return len(inputs), 0


def prepare_batch(batch: pa.Table, inputs: list[str], config: PreprocessConfig) -> pa.Table:
    """Input rows `{origin, raw, source, error}` (see `actors.inputs`) to stream rows."""
    rows = [_prepare_row(row, inputs, config) for row in batch.to_pylist()]
    if config.dedup.near is not None:
        candidates = [row for row in rows if row.get("reason") is None]
        signatures, present = minhasher(config.dedup.near).signatures([row["text"] for row in candidates])
        for i, signature in zip(present, signatures):
            candidates[i]["signature"] = signature.tobytes()
    return pa.Table.from_pylist(rows, schema=STREAM_SCHEMA)


def _prepare_row(raw_row: dict[str, Any], inputs: list[str], config: PreprocessConfig) -> dict[str, Any]:
    origin, source = raw_row["origin"], raw_row["source"]
    file_index, line = input_position(origin, inputs)
    parsed = parse_raw_row(raw_row, config.max_row_bytes)
    if isinstance(parsed, RowError):
        row_rank = rank(file_index, line, "", uuid.uuid4().hex)
        return {
            "origin": origin, "source": source, "reason": parsed.reason, "detail": parsed.detail, "raw": parsed.raw,
            "rank": row_rank, "partition": partition_of(row_rank, config.dedup.partitions),
        }
    original = "\n".join(parsed.user_turns())
    text = normalize(original)
    key = match_key(text)
    row = {
        **parsed.to_row(), "origin": origin, "rank": rank(file_index, line, parsed.id, uuid.uuid4().hex),
        "text": text, "key": key, "partition": partition_of(key, config.dedup.partitions),
    }
    failure = first_failure(QueryText(original, text, parsed.category.value), config.filters)
    if failure is not None:
        row["reason"], row["detail"] = failure
    return row


# ---- 2. exact duplicates, one hash partition of match keys at a time -----------------------------------------------


def mark_exact_duplicates(partition: pa.Table) -> pa.Table:
    candidates = open_rows(partition)
    keys, ranks, ids, sources = (_column(partition, name) for name in ("key", "rank", "id", "source"))
    representative = exact_duplicates([keys[i] for i in candidates], [ranks[i] for i in candidates])
    verdicts = {}
    for member, rep in representative.items():
        first = candidates[rep]
        verdicts[candidates[member]] = Verdict(
            "duplicate_exact", "same normalized text as a kept query", ids[first], sources[first], 1.0
        )
    return with_verdicts(partition, verdicts)


# ---- 3. near duplicates: LSH buckets in hash partitions, then union-find over the verified pairs -------------------


_MINHASHERS: dict[NearDedupConfig, MinHasher] = {}


def minhasher(config: NearDedupConfig) -> MinHasher:
    """One per worker process and config: choosing the LSH bands takes a moment."""
    if config not in _MINHASHERS:
        _MINHASHERS[config] = MinHasher(config.num_perm, config.shingle_size, config.threshold, config.seed)
    return _MINHASHERS[config]


BAND_SCHEMA = pa.schema([("band_key", pa.uint64()), ("partition", pa.int64()), ("rank", pa.string())])
PAIR_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string())])


def band_rows(batch: pa.Table, config: NearDedupConfig, partitions: int) -> pa.Table:
    """One row per open row and LSH band: the band's key and its hash partition."""
    rows = [i for i in open_rows(batch) if batch.column("signature")[i].is_valid]
    if not rows:
        return BAND_SCHEMA.empty_table()
    hasher = minhasher(config)
    signatures = np.frombuffer(b"".join(_column(batch.take(rows), "signature")), dtype=np.uint32)
    keys = hasher.band_keys(signatures.reshape(len(rows), hasher.num_perm)).ravel()
    ranks = np.repeat(np.array(_column(batch, "rank"), dtype=object)[rows], hasher.bands)
    return pa.table({"band_key": keys, "partition": (keys % np.uint64(partitions)).astype(np.int64), "rank": ranks},
                    schema=BAND_SCHEMA)


def candidate_pairs(partition: pa.Table) -> pa.Table:
    pairs = bucket_pairs(_column(partition, "band_key"), _column(partition, "rank"))
    return pa.table({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}, schema=PAIR_SCHEMA)


def signatures_of(batch: pa.Table, ranks: set[str]) -> pa.Table:
    """Rank, id, source and signature of the rows in `ranks`."""
    wanted = pc.is_in(batch.column("rank"), value_set=pa.array(sorted(ranks), type=pa.string()))
    return batch.filter(wanted).select(["rank", "id", "source", "signature"])


def mark_by_rank(batch: pa.Table, verdicts: dict[str, Verdict]) -> pa.Table:
    ranks = _column(batch, "rank")
    return with_verdicts(batch, {i: verdicts[ranks[i]] for i in open_rows(batch) if ranks[i] in verdicts})


# ---- 4. decontamination: exact and n-gram on CPU workers, then embeddings on the embedding pool -------------------


def _contaminated(match: Contamination) -> Verdict:
    detail = {
        "contaminated_exact": "same normalized text as a benchmark item",
        "contaminated_ngram": "holds most word n-grams of a benchmark item",
        "contaminated_embedding": "embedding close to a benchmark item",
    }[match.reason]
    return Verdict(match.reason, match.signals or detail, match.item.id, match.item.source, match.similarity)


def mark_benchmark_matches(batch: pa.Table, index: BenchmarkIndex) -> pa.Table:
    keys = _column(batch, "key")
    verdicts = {}
    for i in open_rows(batch):
        match = index.exact(keys[i]) or index.ngram(keys[i])
        if match is not None:
            verdicts[i] = _contaminated(match)
    return with_verdicts(batch, verdicts)
