"""The steps over Arrow batches: every input row becomes one stream row, and a row's first rejection is final."""

import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.config import NearDedupConfig, PreprocessConfig
from pipeline.loaders import UnreadableFile
from pipeline.preprocess.benchmarks import BenchmarkItem
from pipeline.preprocess.decontaminate import BenchmarkIndex
from pipeline.preprocess.dedup import near_duplicates
from pipeline.preprocess.normalize import normalize
from pipeline.preprocess.steps import (
    STREAM_SCHEMA,
    Verdict,
    band_rows,
    candidate_pairs,
    input_position,
    mark_benchmark_matches,
    mark_by_rank,
    mark_exact_duplicates,
    prepare_batch,
    signatures_of,
    with_verdicts,
)

CONFIG = PreprocessConfig.model_validate({"dedup": {"partitions": 4, "near": {"threshold": 0.8, "shingle_size": 3}}})
APPLES = (
    "Tom has 3 red apples and 4 yellow pears in his basket. On Sunday he walks to the farmers market near the old "
    "church, where he buys 2 more green apples and a bag of plums from his neighbour. On the way home he gives one "
    "pear to his sister. How many apples does he have now?"
)
TRAIN = "A train leaves the station at noon travelling at 60 miles per hour. When does it reach a city 180 miles away?"
LINES = [
    {"id": "a", "category": "chat", "prompt": APPLES},
    {"id": "b", "category": "chat", "prompt": "  " + APPLES.upper() + "\n"},  # exact duplicate of a
    {"id": "c", "category": "chat", "prompt": APPLES.replace("Sunday", "Monday")},  # near duplicate of a
    {"id": "d", "category": "chat", "prompt": TRAIN},
    {"id": "e", "category": "chat", "prompt": "Hi"},  # too short
    '{"category": "chat", "prompt": "unterminated',
    {"no": "shape"},
]


def input_batch(path: str = "corpus.jsonl") -> pa.Table:
    raws = [(line if isinstance(line, str) else json.dumps(line)).encode() for line in LINES]
    return pa.table({
        "origin": [f"{path}:{n}" for n in range(1, len(raws) + 1)], "raw": raws, "source": ["corpus"] * len(raws),
    })


@pytest.fixture
def stream() -> pa.Table:
    return prepare_batch(input_batch(), ["corpus.jsonl"], CONFIG)


def test_every_input_row_becomes_one_stream_row(stream):
    assert stream.schema.equals(STREAM_SCHEMA)
    rows = stream.to_pylist()
    assert [r["origin"] for r in rows] == [f"corpus.jsonl:{n}" for n in range(1, 8)]
    assert [r["reason"] for r in rows] == [None] * 4 + ["too_short", "malformed_json", "unknown_record_shape"]
    assert rows[5]["raw"].startswith('{"category"') and rows[5]["id"] is None
    assert rows[0]["messages"] == [{"role": "user", "content": APPLES}], "the original text is kept"
    assert rows[1]["text"] == APPLES.upper() and rows[1]["key"] == rows[0]["key"]
    assert rows[0]["partition"] == rows[1]["partition"] and 0 <= rows[0]["partition"] < 4
    assert len(rows[0]["signature"]) == 4 * CONFIG.dedup.near.num_perm and rows[4]["signature"] is None
    assert sorted(r["rank"] for r in rows) == [r["rank"] for r in rows], "ranks follow input order"


def test_the_unreadable_rest_of_a_gzip_file_is_one_rejected_row_that_says_where_it_breaks():
    rest = UnreadableFile("corpus.jsonl.gz", 7, EOFError("cut off")).row()
    [row] = prepare_batch(pa.Table.from_pylist([rest]), ["corpus.jsonl.gz"], CONFIG).to_pylist()
    assert (row["origin"], row["reason"]) == ("corpus.jsonl.gz:8", "unreadable_file")
    assert "breaks after line 7" in row["detail"]


@pytest.mark.parametrize(
    "origin, position",
    [
        ("s3://b/q.jsonl:12", (1, 12)),
        ("a.jsonl:3", (0, 3)),
        ("data/x.parquet#row", (2, 0)),
        ("kept/part-1.parquet#row", (3, 0)),
        ("kept/more/b.jsonl:7", (3, 7)),
        ("elsewhere.jsonl:3", (4, 0)),
        ("kept-other/a.jsonl:3", (4, 0)),
    ],
)
def test_input_position(origin, position):
    assert input_position(origin, ["a.jsonl", "s3://b/q.jsonl", "data/x.parquet", "kept/"]) == position


def test_exact_duplicates_point_at_the_first_occurrence(stream):
    rows = mark_exact_duplicates(stream).to_pylist()
    assert rows[1]["reason"] == "duplicate_exact"
    assert (rows[1]["matched_id"], rows[1]["matched_source"], rows[1]["similarity"]) == ("a", "corpus", 1.0)
    assert [r["reason"] for r in rows[2:]] == [None, None, "too_short", "malformed_json", "unknown_record_shape"]


def test_near_duplicates_from_bands_to_verdicts(stream):
    stream = mark_exact_duplicates(stream)
    bands = band_rows(stream, CONFIG.dedup.near, CONFIG.dedup.partitions)
    assert set(bands.column("rank").to_pylist()) == {stream.column("rank").to_pylist()[i] for i in (0, 2, 3)}
    pairs = candidate_pairs(bands)
    ranks = stream.column("rank").to_pylist()
    assert (ranks[0], ranks[2]) in zip(pairs.column("a").to_pylist(), pairs.column("b").to_pylist())
    found = signatures_of(stream, {ranks[0], ranks[2]}).to_pylist()
    signatures = {r["rank"]: np.frombuffer(r["signature"], dtype=np.uint32) for r in found}
    groups = near_duplicates([(ranks[0], ranks[2])], signatures, CONFIG.dedup.near.threshold)
    assert list(groups) == [ranks[2]] and groups[ranks[2]][0] == ranks[0]
    verdicts = {ranks[2]: Verdict("duplicate_near", "close", "a", "corpus", groups[ranks[2]][1])}
    reasons = mark_by_rank(stream, verdicts).column("reason").to_pylist()
    assert reasons[:4] == [None, "duplicate_exact", "duplicate_near", None]


def test_a_rejected_row_keeps_its_first_reason(stream):
    verdicts = {i: Verdict("contaminated_exact", "x", "m", "bench", 1.0) for i in range(7)}
    stream = with_verdicts(stream, {4: verdicts[4]})
    assert stream.column("reason").to_pylist()[4] == "contaminated_exact"
    assert mark_by_rank(stream, {r: verdicts[0] for r in stream.column("rank").to_pylist()}).column(
        "reason").to_pylist() == ["contaminated_exact"] * 5 + ["malformed_json", "unknown_record_shape"]


def test_benchmark_matches_mark_open_rows_only(stream):
    index = BenchmarkIndex([BenchmarkItem("t-1", "trains", normalize(TRAIN)), BenchmarkItem("h", "x", "Hi")], 8, 0.5)
    rows = mark_benchmark_matches(stream, index).to_pylist()
    match = (rows[3]["reason"], rows[3]["matched_id"], rows[3]["matched_source"])
    assert match == ("contaminated_exact", "t-1", "trains")
    assert rows[4]["reason"] == "too_short", "a filtered row is not matched again"


def test_near_dedup_can_be_switched_off():
    config = CONFIG.model_copy(update={"dedup": CONFIG.dedup.model_copy(update={"near": None})})
    assert prepare_batch(input_batch(), ["corpus.jsonl"], config).column("signature").null_count == len(LINES)
    assert NearDedupConfig() != CONFIG.dedup.near
