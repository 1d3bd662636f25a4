"""`python -m jobs.preprocess` as a user runs it: a real local Ray cluster, the real all-MiniLM-L6-v2 on the embedding
actor pool, inputs and outputs on a real S3-compatible server (moto). A planted corpus checks that every kind of
reject is caught and attributed; a run over all the shared data checks that the job completes at that size; bad
arguments and killed runs cost nothing: the previous run's output stays as it was."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import yaml

from pipeline.config import NearDedupConfig
from pipeline.schema import PREPROCESS_REJECT_SCHEMA, QUERY_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO, SHARED_DATA, descendants_named, shared_file

pytestmark = pytest.mark.slow

BUCKET = "distillery-test"


def rows(relpath: str, count: int | None = None) -> list[dict]:
    return [json.loads(line) for line in shared_file(relpath).read_text().splitlines()[:count]]


def reworded(matched_id: str) -> str:
    lines = (REPO / "tests" / "data" / "reworded_benchmarks.jsonl").read_text().splitlines()
    return next(r["prompt"] for r in map(json.loads, lines) if r["matched_id"] == matched_id)


def job(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "jobs.preprocess", *args, "--no-progress"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)


def run_job(inputs: list[str], output: str, benchmarks: list[str], config: dict, tmp: Path) -> dict:
    config_path = tmp / "preprocess.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = job("--input", *inputs, "--output", output, "--benchmarks", *benchmarks, "--config", str(config_path))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "preprocess summary" in result.stdout
    return json.loads(Store(output, config.get("storage_options")).read_text("summary.json"))


# ---- a planted corpus -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_command(tmp_path_factory, s3_server) -> dict:
    """The planted corpus and benchmarks, and the arguments of the run over them (`planted` runs it)."""
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

    config = {
        "max_row_bytes": 4096,
        "dedup": {"partitions": 4},
        "decontamination": {"embedding": {"batch_size": 32}},
        "storage_options": s3_server,
        "ray": {"dashboard": False},
    }
    benchmarks = [f"s3://{BUCKET}/benchmarks/gsm8k_test.jsonl", str(bench_dir / "math500.jsonl"),
                  str(bench_dir / "aime24.jsonl"), "humaneval"]
    return {"inputs": [f"s3://{BUCKET}/corpus/queries.jsonl", str(parquet)], "benchmarks": benchmarks,
            "config": config, "tmp": tmp, "total": n_clean + len(planted_rows) + len(bad) + len(extra),
            "gsm_test": gsm_test}


@pytest.fixture(scope="module")
def planted(planted_command, s3_server):
    run = planted_command
    output = f"s3://{BUCKET}/preprocess-run"
    summary = run_job(run["inputs"], output, run["benchmarks"], run["config"], run["tmp"])
    store = Store(output, s3_server)
    return summary, store.read_table("kept"), store.read_table("rejects"), run["total"], run["gsm_test"]


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
    assert NearDedupConfig().threshold <= near["similarity"] < 1.0
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
    assert {path.rsplit("/", 1)[-1]: n for path, n in summary["benchmark_items"].items()} == {
        "gsm8k_test.jsonl": 30, "math500.jsonl": 30, "aime24.jsonl": 30, "humaneval": 164,
    }, "items per benchmark file, by the path as given"
    assert f"s3://{BUCKET}/benchmarks/gsm8k_test.jsonl" in summary["benchmark_items"]
    assert summary["by_source"]["extra"] == {"duplicate_exact": 1, "kept": 1}
    assert sum(sum(c.values()) for c in summary["by_source"].values()) == total
    assert summary["contaminated_by_benchmark"] == {
        "HumanEval": {"contaminated_embedding": 1},
        "aime24": {"contaminated_exact": 1},
        "gsm8k_test": {"contaminated_embedding": 1, "contaminated_ngram": 1},
        "math500": {"contaminated_embedding": 1, "contaminated_exact": 1},
    }


# ---- a run killed in its last step resumes from it --------------------------------------------------------------

EARLIER_STEPS = ["parse_filter", "exact_dedup", "near_dedup", "decontaminate"]


def markers(fs: s3fs.S3FileSystem, output: str) -> dict[str, dict]:
    """Step name → committed marker, of the one unfinished run under `output`."""
    fs.invalidate_cache()
    paths = fs.glob(f"{output}/_staging/*/steps/*/_SUCCESS")
    assert len({path.split("/")[-4] for path in paths}) <= 1, paths
    return {path.split("/")[-2]: json.loads(fs.cat(path)) for path in paths}


def outcomes(output: str, options: dict) -> tuple[list[str], list[tuple]]:
    """The kept ids, and each reject's origin, id, reason and matched item, in order."""
    store = Store(output, options)
    rejects = store.read_table("rejects").to_pylist()
    return (sorted(store.column_values("kept", "id")),
            sorted((r["origin"], r["id"] or "", r["reason"], r["matched_id"] or "") for r in rejects))


@pytest.fixture(scope="module")
def killed_in_embedding(planted_command, s3_server):
    """The planted run, SIGKILLed (the job and its local Ray cluster) once its embedding step started; its staging
    folder is also copied to a second output, for a run with another near-duplicate threshold."""
    run, fs = planted_command, s3fs.S3FileSystem(**s3_server)
    output = f"{BUCKET}/preprocess-killed"
    config_path = run["tmp"] / "killed.yaml"
    config_path.write_text(yaml.safe_dump(run["config"]))
    log = run["tmp"] / "killed.log"
    command = [sys.executable, "-m", "jobs.preprocess", "--input", *run["inputs"], "--output", f"s3://{output}",
               "--benchmarks", *run["benchmarks"], "--config", str(config_path), "--no-progress"]
    with log.open("w") as stdout:
        killed = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 600
        while "step 5/5 embedding: computing" not in log.read_text():
            assert killed.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.1)
        tree = set(descendants_named(killed.pid, ""))
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        for pid in tree:  # Ray's processes that left the job's session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    committed = markers(fs, output)
    assert sorted(committed) == sorted(EARLIER_STEPS), "killed in the embedding step, after the earlier ones"
    assert not fs.exists(f"{output}/summary.json") and not fs.exists(f"{output}/kept")
    staging = fs.glob(f"{output}/_staging/*")[0]
    fs.copy(staging, f"{BUCKET}/preprocess-threshold/_staging/{staging.rsplit('/', 1)[1]}", recursive=True)
    return {"output": f"s3://{output}", "markers": committed, "log": log.read_text()}


def test_a_run_killed_in_the_embedding_step_resumes_there_and_ends_as_an_uninterrupted_run(
        planted, planted_command, killed_in_embedding, s3_server):
    run, killed = planted_command, killed_in_embedding
    assert "step 1/5 parse_filter: computing" in killed["log"]
    config_path = run["tmp"] / "resumed.yaml"
    config_path.write_text(yaml.safe_dump(run["config"]))
    result = job("--input", *run["inputs"], "--output", killed["output"], "--benchmarks", *run["benchmarks"],
                 "--config", str(config_path))
    assert result.returncode == 0, result.stderr[-4000:]
    for number, step in enumerate(EARLIER_STEPS, start=1):
        assert f"step {number}/5 {step}: reused" in result.stdout, result.stdout
    assert "step 5/5 embedding: computing" in result.stdout and "step 5 embedding: computed" in result.stdout
    summary = json.loads(Store(killed["output"], s3_server).read_text("summary.json"))
    assert {step: report["status"] for step, report in summary["steps"].items()} == {
        **{step: "reused" for step in EARLIER_STEPS}, "embedding": "computed"}
    for step in EARLIER_STEPS:  # each was committed once, by the killed run, and never again
        assert summary["steps"][step]["committed_at"] == killed["markers"][step]["committed_at"], step
    assert summary["steps"]["embedding"]["rejected"] == {"contaminated_embedding": 3}
    assert summary["steps"]["near_dedup"]["rejected"] == {"duplicate_near": 1}

    uninterrupted = planted[0]
    assert outcomes(killed["output"], s3_server) == outcomes(f"s3://{BUCKET}/preprocess-run", s3_server)
    assert {k: summary[k] for k in ("rows_read", "kept", "rejected", "by_source", "contaminated_by_benchmark")} == {
        k: uninterrupted[k] for k in ("rows_read", "kept", "rejected", "by_source", "contaminated_by_benchmark")}
    fs = s3fs.S3FileSystem(**s3_server)
    fs.invalidate_cache()
    assert not fs.glob(f"{killed['output']}/_staging/*"), "staging is removed"


def test_a_changed_near_duplicate_threshold_reuses_parsing_and_exact_dedup(planted_command, killed_in_embedding,
                                                                           s3_server, tmp_path):
    run, killed = planted_command, killed_in_embedding
    output = f"s3://{BUCKET}/preprocess-threshold"
    config = {**run["config"], "dedup": {**run["config"]["dedup"], "near": {"threshold": 0.99}}}
    summary = run_job(run["inputs"], output, run["benchmarks"], config, tmp_path)
    assert {step: report["status"] for step, report in summary["steps"].items()} == {
        "parse_filter": "reused", "exact_dedup": "reused", "near_dedup": "computed", "decontaminate": "computed",
        "embedding": "computed"}
    for step in ("parse_filter", "exact_dedup"):
        assert summary["steps"][step]["committed_at"] == killed["markers"][step]["committed_at"], step
    assert summary["steps"]["near_dedup"]["rejected"] == {}, "the planted near duplicate is under 0.99"
    assert "dup-near" in Store(output, s3_server).column_values("kept", "id")
    assert summary["kept"] + sum(summary["rejected"].values()) == run["total"]


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
    # MATH train holds problems of MATH500. GSM8K's train and test splits share story templates but not problems: a
    # twin states other numbers, so the number check keeps (nearly) all of them.
    contaminated = summary["contaminated_by_benchmark"]
    assert contaminated["math500"]["contaminated_ngram"] > 0
    assert sum(contaminated.get("gsm8k_test", {}).values()) <= 5
    assert summary["by_source"]["math_train"].get("contaminated_ngram", 0) > 0
    assert summary["kept"] > 0.97 * lines


# ---- bad arguments and killed runs cost nothing ---------------------------------------------------------------------

QUERIES = [
    {"id": "rainbow", "category": "chat", "prompt": "Explain how a rainbow forms, in two paragraphs."},
    {"id": "train", "category": "math", "prompt": "A train travels 60 km in 45 minutes. What is its speed in km/h?",
     "reference": {"answer": "80"}},
    {"id": "leak", "category": "math", "prompt": "What is the sum of the first 10 positive odd integers?",
     "reference": {"answer": "100"}},
]
BENCHMARK = [
    {"unique_id": "odd-sum", "problem": "What is the sum of the first 10 positive odd integers?", "answer": "100"},
    {"unique_id": "primes", "problem": "How many primes are less than 30?", "answer": "10"},
]
SMALL = {"dedup": {"partitions": 2}, "decontamination": {"embedding": None}, "ray": {"dashboard": False}}


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a refused run prints, after checking it is refused the way a user should see it."""
    assert result.returncode == 2, result.stderr[-4000:]
    assert "Traceback" not in result.stderr and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished run of three queries, one a benchmark problem, against one benchmark file of two items."""
    tmp = tmp_path_factory.mktemp("earlier")
    corpus, benchmark = jsonl(tmp / "corpus.jsonl", QUERIES), jsonl(tmp / "bench.jsonl", BENCHMARK)
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    result = job("--input", corpus, "--output", str(tmp / "out"), "--benchmarks", benchmark, "--config", str(config))
    assert result.returncode == 0, result.stderr[-4000:]
    return {"tmp": tmp, "corpus": corpus, "benchmark": benchmark, "config": str(config), "stdout": result.stdout}


@pytest.fixture
def previous(earlier, tmp_path) -> Path:
    """The earlier run's output folder, copied for a test to run into."""
    return Path(shutil.copytree(earlier["tmp"] / "out", tmp_path / "out"))


def test_the_summary_counts_benchmark_items_per_file(earlier):
    summary = json.loads((earlier["tmp"] / "out" / "summary.json").read_text())
    assert summary["benchmark_items"] == {earlier["benchmark"]: 2}
    assert summary["contaminated_by_benchmark"] == {"bench": {"contaminated_exact": 1}}
    assert f"benchmark {earlier['benchmark']}: 2 items" in earlier["stdout"]
    config = json.loads((earlier["tmp"] / "out" / "config.json").read_text())
    assert config["benchmark_items"] == {earlier["benchmark"]: 2}
    assert sorted(p.name for p in (earlier["tmp"] / "out").iterdir()) == ["config.json", "kept", "rejects",
                                                                         "summary.json"], "no staging is left"


def test_help_documents_every_option_and_runs_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and list(tmp_path.iterdir()) == []
    for option in ["--input", "--output", "--benchmarks", "--config", "--no-progress", "none", "humaneval"]:
        assert option in result.stdout, option


def random_bytes(path: Path) -> str:
    path.write_bytes(os.urandom(4096))
    return str(path)


# Each row: which argument is bad, how to make it in a scratch folder, and what the one line says after its path.
BAD_ARGUMENTS = {
    "text-input": ("input", lambda tmp: jsonl(tmp / "corpus.txt", QUERIES), "not JSONL, JSONL.gz or Parquet"),
    "binary-input": ("input", lambda tmp: random_bytes(tmp / "corpus.parquet"), "Parquet magic bytes not found"),
    "empty-input": ("input", lambda tmp: jsonl(tmp / "corpus.jsonl", []), "holds no rows"),
    "missing-benchmark": ("benchmark", lambda tmp: str(tmp / "math500.jsonl"), "No such file or directory"),
}


@pytest.mark.parametrize("argument, make, reason", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_a_bad_argument_is_refused_in_one_line_and_the_previous_output_stays(earlier, previous, tmp_path, argument,
                                                                           make, reason):
    before = contents(previous)
    path = make(tmp_path)
    given = {"input": earlier["corpus"], "benchmark": earlier["benchmark"], argument: path}
    line = refusal(job("--input", given["input"], "--benchmarks", given["benchmark"], "--output", str(previous),
                       "--config", earlier["config"]))
    assert line.startswith(f"{argument} {path}: ") and reason in line, line
    assert contents(previous) == before


def test_no_benchmarks_is_refused_with_how_to_name_them_or_opt_out(earlier, previous):
    before = contents(previous)
    line = refusal(job("--input", earlier["corpus"], "--output", str(previous), "--config", earlier["config"]))
    assert "--benchmarks FILE" in line and "decontamination.benchmarks" in line and "--benchmarks none" in line
    assert contents(previous) == before


def test_an_unwritable_output_is_refused_before_any_work(earlier, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    output = str(a_file / "out")
    line = refusal(job("--input", earlier["corpus"], "--output", output, "--benchmarks", earlier["benchmark"],
                       "--config", earlier["config"]))
    assert line == f"output {output}: {a_file} is a file, not a folder"
    assert a_file.read_text() == "not a folder"


def test_a_typo_and_a_killed_run_leave_the_previous_output_and_the_fixed_run_replaces_it(earlier, previous):
    """Into one output folder: a mistyped input, then a run killed mid-way, then the fixed command (declining
    benchmarks this time)."""
    before = contents(previous)
    typo = str(Path(earlier["corpus"]).with_name("corpsu.jsonl"))
    assert refusal(job("--input", typo, "--output", str(previous), "--benchmarks", "none",
                       "--config", earlier["config"])) == f"input {typo}: no such file or folder"
    assert contents(previous) == before

    command = [sys.executable, "-m", "jobs.preprocess", "--input", earlier["corpus"], "--output", str(previous),
               "--benchmarks", "none", "--config", earlier["config"], "--no-progress"]
    killed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(previous.glob("_staging/*/config.json")) and killed.poll() is None:
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.1)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # the job and the local Ray cluster it started
        killed.wait()
    assert {k: v for k, v in contents(previous).items() if not k.startswith("_staging/")} == before
    assert list(previous.glob("_staging/*/config.json")), "the killed run was writing beside the output"

    fixed = job("--input", earlier["corpus"], "--output", str(previous), "--benchmarks", "none",
                "--config", earlier["config"])
    assert fixed.returncode == 0, fixed.stderr[-4000:]
    assert "benchmarks: none, 0 items" in fixed.stdout
    summary = json.loads((previous / "summary.json").read_text())
    assert summary["benchmark_items"] == {} and summary["kept"] == len(QUERIES)
    assert set(Store(str(previous)).column_values("kept", "id")) == {q["id"] for q in QUERIES}
    assert sorted(p.name for p in previous.iterdir()) == ["config.json", "kept", "summary.json"], (
        "nothing was rejected, so the earlier run's rejects are gone too; so is the killed run's staging folder"
    )
