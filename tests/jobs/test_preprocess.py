"""`python -m jobs.preprocess` as a user runs it: a real local Ray cluster, the real all-MiniLM-L6-v2 on the embedding
actor pool, inputs and outputs on a real S3-compatible server (moto). A planted corpus checks that every kind of
reject is caught and attributed; a run over all the shared data checks that the job completes at that size."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import yaml

from pipeline.schema import PREPROCESS_REJECT_SCHEMA, QUERY_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO, SHARED_DATA, shared_file

pytestmark = pytest.mark.slow

BUCKET = "distillery-test"


def rows(relpath: str, count: int | None = None) -> list[dict]:
    return [json.loads(line) for line in shared_file(relpath).read_text().splitlines()[:count]]


def reworded(matched_id: str) -> str:
    lines = (REPO / "tests" / "data" / "reworded_benchmarks.jsonl").read_text().splitlines()
    return next(r["prompt"] for r in map(json.loads, lines) if r["matched_id"] == matched_id)


def run_job(inputs: list[str], output: str, benchmarks: list[str], config: dict, tmp: Path) -> dict:
    config_path = tmp / "preprocess.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "jobs.preprocess", "--input", *inputs, "--output", output,
               "--benchmarks", *benchmarks, "--config", str(config_path), "--no-progress"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "preprocess summary" in result.stdout
    return json.loads(Store(output, config.get("storage_options")).read_text("summary.json"))


# ---- a planted corpus -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory, s3_server):
    tmp = tmp_path_factory.mktemp("preprocess")
    gsm_train = rows("queries/gsm8k_train.jsonl", 12)
    gsm_test, math500, aime24 = rows("benchmarks/gsm8k_test.jsonl", 30), rows("benchmarks/math500.jsonl", 30), rows(
        "benchmarks/aime24.jsonl")
    clean = [{"id": f"clean-{i}", "category": "math", "prompt": r["question"], "reference": {"answer": "1"}}
             for i, r in enumerate(gsm_train)]
    lines = [json.dumps(q) for q in clean] + [json.dumps(r) for r in rows("queries/mbpp.jsonl", 3)] + [
        json.dumps(r) for r in rows("queries/arc_challenge_dev.jsonl", 2)
    ]
    n_clean = len(lines)
    planted_rows = {
        "dup-exact": {**clean[0], "prompt": "  " + clean[0]["prompt"].upper().replace(" ", "   ") + "\n"},
        "dup-near": {**clean[1], "prompt": clean[1]["prompt"] + " Please show your work."},
        "bench-verbatim": math500[0],  # MATH format: id math500-...; the loader makes it corpus-<unique_id>
        "bench-formatting": {
            "category": "math", "reference": {"answer": "113"},
            "prompt": aime24[1]["problem"].upper().replace("$", " $ ").replace("\\frac", "\\dfrac"),
        },
        "bench-inside": {"category": "math", "reference": {"answer": "18"},
                         "prompt": f"Solve this step by step.\n\n{gsm_test[0]['question']}\n\nExplain each step."},
        "bench-reworded-gsm": {"category": "math", "reference": {"answer": "260"},
                               "prompt": reworded("q-568ff05ca311a057")},
        "bench-reworded-math": {"category": "math", "reference": {"answer": "9"},
                                "prompt": reworded("math500-test/number_theory/572.json")},
        "bench-reworded-humaneval": {"category": "general", "prompt": reworded("HumanEval-0")},
        "url": {"category": "general", "prompt": "Summarize https://en.wikipedia.org/wiki/Dota_2 in 200 words."},
        "short": {"category": "chat", "prompt": "Hi!"},
    }
    for name, row in planted_rows.items():
        lines.append(json.dumps({**row, "id": name} if "category" in row else row))
    bad = [
        b'{"category": "math", "prompt": "unterminated',
        b'{"category": "chat", "prompt": "caf\xe9 au lait, please explain its history"}',
        b'{"no": "known shape"}',
        b'{"id": "no-reference", "category": "math", "prompt": "What is 1 + 1?"}',
        json.dumps({"id": "huge", "category": "chat", "prompt": "word " * 1000}).encode(),
    ]
    corpus = b"\n".join(line.encode() for line in lines) + b"\n" + b"\n".join(bad) + b"\n"
    fs = s3fs.S3FileSystem(**s3_server)
    fs.pipe(f"{BUCKET}/corpus/queries.jsonl", corpus)
    fs.pipe(f"{BUCKET}/benchmarks/gsm8k_test.jsonl", "\n".join(map(json.dumps, gsm_test)).encode())
    # A second input, in Parquet: one new query and a copy of one already in the JSONL file, which comes first.
    parquet = tmp / "extra.parquet"
    extra = [{"id": "pq-new", "category": "chat", "prompt": "Explain how a rainbow forms, in two paragraphs."},
             {"id": "pq-copy", "category": "math", "prompt": clean[2]["prompt"], "reference": {"answer": "1"}}]
    pq.write_table(pa.Table.from_pylist([{**r, "reference": json.dumps(r.get("reference"))} for r in extra]), parquet)
    bench_dir = tmp / "benchmarks"
    bench_dir.mkdir()
    for name, data in [("math500", math500), ("aime24", aime24)]:
        (bench_dir / f"{name}.jsonl").write_text("\n".join(map(json.dumps, data)) + "\n")

    output = f"s3://{BUCKET}/preprocess-run"
    config = {
        "max_row_bytes": 4096,
        "dedup": {"partitions": 4},
        "decontamination": {"embedding": {"batch_size": 32}},
        "storage_options": s3_server,
        "ray": {"dashboard": False},
    }
    benchmarks = [f"s3://{BUCKET}/benchmarks/gsm8k_test.jsonl", str(bench_dir / "math500.jsonl"),
                  str(bench_dir / "aime24.jsonl"), "humaneval"]
    summary = run_job([f"s3://{BUCKET}/corpus/queries.jsonl", str(parquet)], output, benchmarks, config, tmp)
    store = Store(output, s3_server)
    kept, rejects = store.read_table("kept"), store.read_table("rejects")
    total = n_clean + len(planted_rows) + len(bad) + len(extra)
    return summary, kept, rejects, total, gsm_test


def by_id(rejects: pa.Table) -> dict[str, dict]:
    return {r["id"]: r for r in rejects.to_pylist() if r["id"]}


def test_every_input_row_is_kept_or_rejected_once(planted):
    summary, kept, rejects, total, _ = planted
    assert kept.schema.equals(QUERY_SCHEMA) and rejects.schema.equals(PREPROCESS_REJECT_SCHEMA)
    assert kept.num_rows + rejects.num_rows == total == summary["rows_read"]
    assert summary["kept"] == kept.num_rows and sum(summary["rejected"].values()) == rejects.num_rows
    jsonl_origins = [o for o in rejects.column("origin").to_pylist() if o.startswith("s3://")]
    assert len(jsonl_origins) == len(set(jsonl_origins))
    assert not set(kept.column("id").to_pylist()) & set(rejects.column("id").to_pylist())


def test_clean_queries_are_kept_as_written(planted):
    _, kept, _, _, _ = planted
    ids = set(kept.column("id").to_pylist())
    assert {f"clean-{i}" for i in range(12)} <= ids
    assert {"queries-1", "queries-2", "queries-3", "queries-Mercury_SC_405487"} & ids, "MBPP and ARC rows pass"
    assert "pq-new" in ids
    first = next(r for r in kept.to_pylist() if r["id"] == "clean-0")
    assert first["messages"][0]["content"] == rows("queries/gsm8k_train.jsonl", 1)[0]["question"]


def test_duplicates_point_at_the_kept_query(planted):
    _, kept, rejects, _, _ = planted
    found = by_id(rejects)
    exact, near, cross_file = found["dup-exact"], found["dup-near"], found["pq-copy"]
    assert (exact["reason"], exact["matched_id"], exact["matched_source"]) == ("duplicate_exact", "clean-0", "queries")
    assert (cross_file["reason"], cross_file["matched_id"]) == ("duplicate_exact", "clean-2")
    assert cross_file["origin"].endswith("extra.parquet#row")
    assert (near["reason"], near["matched_id"], near["matched_source"]) == ("duplicate_near", "clean-1", "queries")
    assert 0.8 <= near["similarity"] < 1.0
    assert {"clean-0", "clean-1", "clean-2"} <= set(kept.column("id").to_pylist())


def test_contaminated_queries_are_attributed_to_their_benchmark_item(planted):
    _, _, rejects, _, gsm_test = planted
    found = by_id(rejects)
    verbatim = found["queries-test/precalculus/807.json"]  # MATH-format row: the loader prefixes the file's name
    expected = {
        "bench-formatting": ("contaminated_exact", "aime24-61", "aime24"),
        "bench-inside": ("contaminated_ngram", "q-4438fe5dca819b9b", "gsm8k_test"),
        "bench-reworded-gsm": ("contaminated_embedding", "q-568ff05ca311a057", "gsm8k_test"),
        "bench-reworded-math": ("contaminated_embedding", "math500-test/number_theory/572.json", "math500"),
        "bench-reworded-humaneval": ("contaminated_embedding", "HumanEval-0", "HumanEval"),
    }
    for name, attribution in expected.items():
        assert (found[name]["reason"], found[name]["matched_id"], found[name]["matched_source"]) == attribution, name
    assert (verbatim["reason"], verbatim["matched_id"], verbatim["similarity"]) == (
        "contaminated_exact", "math500-test/precalculus/807.json", 1.0
    )
    assert found["bench-inside"]["similarity"] == 1.0
    assert all(0.85 <= found[n]["similarity"] <= 1.0 for n in expected if n.startswith("bench-reworded"))
    assert gsm_test[0]["question"] in found["bench-inside"]["messages"][0]["content"], "rejects keep the query"


def test_bad_rows_are_quarantined_with_the_loaders_reasons(planted):
    _, _, rejects, _, _ = planted
    by_line = {int(r["origin"].rsplit(":", 1)[1]): r for r in rejects.to_pylist() if r["origin"].startswith("s3://")}
    tail = [by_line[line]["reason"] for line in sorted(by_line)][-5:]
    assert tail == ["malformed_json", "invalid_utf8", "unknown_record_shape", "invalid_query", "row_too_large"]
    assert all(by_line[line]["raw"] for line in sorted(by_line)[-5:])
    found = by_id(rejects)
    assert found["url"]["reason"] == "contains_url" and found["short"]["reason"] == "too_short"


def test_summary_counts_per_reason_and_source(planted):
    summary, _, _, total, _ = planted
    assert summary["rejected"] == {
        "contaminated_embedding": 3, "contaminated_exact": 2, "contaminated_ngram": 1, "contains_url": 1,
        "duplicate_exact": 2, "duplicate_near": 1, "invalid_query": 1, "invalid_utf8": 1, "malformed_json": 1,
        "row_too_large": 1, "too_short": 1, "unknown_record_shape": 1,
    }
    assert summary["by_source"]["extra"] == {"duplicate_exact": 1, "kept": 1}
    assert sum(sum(c.values()) for c in summary["by_source"].values()) == total
    assert summary["contaminated_by_benchmark"] == {
        "HumanEval": {"contaminated_embedding": 1},
        "aime24": {"contaminated_exact": 1},
        "gsm8k_test": {"contaminated_embedding": 1, "contaminated_ngram": 1},
        "math500": {"contaminated_embedding": 1, "contaminated_exact": 1},
    }


# ---- all of the shared data -----------------------------------------------------------------------------------------


def test_all_shared_queries_against_all_benchmarks(tmp_path):
    """Every shared query file against every shared benchmark and HumanEval, on local disk. Exact and n-gram
    decontamination only: embedding 18,000 queries on this 2-core machine takes longer than a test should (the
    README has the full run's counts, embeddings included)."""
    shared_file("queries/gsm8k_train.jsonl")
    inputs = sorted(str(p) for p in (SHARED_DATA / "queries").glob("*.jsonl"))
    benchmarks = sorted(str(p) for p in (SHARED_DATA / "benchmarks").glob("*.jsonl")) + ["humaneval"]
    config = {"decontamination": {"embedding": None}, "ray": {"dashboard": False}}
    summary = run_job(inputs, str(tmp_path / "out"), benchmarks, config, tmp_path)
    lines = sum(len([line for line in Path(p).read_bytes().split(b"\n") if line.strip()]) for p in inputs)
    assert summary["rows_read"] == lines == 17_867
    assert summary["kept"] + sum(summary["rejected"].values()) == lines
    # The train splits overlap their test sets: MATH train with MATH500 and GSM8K train with GSM8K test.
    contaminated = summary["contaminated_by_benchmark"]
    assert contaminated["math500"]["contaminated_ngram"] > 0 and contaminated["gsm8k_test"]["contaminated_ngram"] > 0
    assert summary["by_source"]["math_train"].get("contaminated_ngram", 0) > 0
    assert summary["kept"] > 0.97 * lines
