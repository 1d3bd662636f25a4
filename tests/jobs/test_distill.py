"""`python -m jobs.distill` end to end, as a user runs it: real local Ray cluster, the embedded SmolLM2 on vLLM,
Math-Verify, and Parquet on a real S3-compatible server (moto). Slow: one engine start, a few generations."""

import json
import subprocess
import sys

import pytest
import yaml

from pipeline.response_format import parse_response
from pipeline.schema import ATTEMPT_SCHEMA, QUERY_SCHEMA, REJECT_SCHEMA, SAMPLE_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO

pytestmark = pytest.mark.slow

WORD_PROBLEMS = [
    ("tom", "Tom has 3 apples and buys 2 more. How many apples does he have now?", "5"),
    ("eggs", "A box holds 6 eggs. How many eggs are in 2 boxes?", "12"),
    ("candy", "Sara has 10 candies and eats 4. How many candies are left?", "6"),
    ("pens", "A pen costs 2 dollars. How much do 3 pens cost?", "6"),
]
EASY_MATH = [
    {"id": f"easy-{name}", "category": "math", "prompt": prompt, "reference": {"answer": answer}}
    for name, prompt, answer in WORD_PROBLEMS
]
BAD_LINES = [
    '{"category": "math", "prompt": "unterminated',  # malformed JSON
    '{"no": "known shape"}',
    '{"category": "math", "prompt": "What is 1 + 1?"}',  # math without a reference
    json.dumps(EASY_MATH[0]),  # duplicate id
]
CHAT = {"id": "chat-1", "category": "chat", "prompt": "Say hello."}  # no judge configured: nothing verifies it


@pytest.fixture(scope="module")
def run_job(tmp_path_factory, s3_server):
    """Writes the corpus and config, and returns a function that runs the job and returns its output store."""
    root = tmp_path_factory.mktemp("distill")
    corpus = root / "corpus.jsonl"
    lines = [json.dumps(q) for q in EASY_MATH] + BAD_LINES + [json.dumps(CHAT)]
    corpus.write_text("\n".join(lines) + "\n")
    output = "s3://distillery-test/distill-run"
    config = {
        "input": {"paths": [str(corpus)]},
        "output": output,
        "storage_options": s3_server,
        "teachers": [
            {
                "name": "smollm2",
                "model": "smollm2-135m-instruct",
                "response_format": "plain",
                "system_prompt": "Solve the problem step by step. End with a line that states the final answer.",
                "engine": {"max_model_len": 1024, "enforce_eager": True, "dtype": "float32", "batch_size": 2,
                           "batches_in_flight": 4},
                "sampling": {"default": {"temperature": 0.8, "max_tokens": 160, "n": 8, "seed": 1}},
                "max_attempts": 2,  # SmolLM2-135M solves about one in ten of these: 16 tries each
            }
        ],
        "verifiers": {"replicas": 1},
        "ray": {"dashboard": False},
        "shard_rows": 2,
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    def run() -> tuple[Store, dict]:
        result = subprocess.run(
            [sys.executable, "-m", "jobs.distill", "--config", str(config_path), "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        assert "distillery summary" in result.stdout
        store = Store(output, s3_server)
        return store, json.loads(store.read_text("summary.json"))

    return run, len(lines)


@pytest.fixture(scope="module")
def first_run(run_job):
    run, n_lines = run_job
    store, summary = run()
    return store, summary, n_lines


def test_every_input_row_is_accounted_for(first_run):
    store, summary, n_lines = first_run
    queries = store.read_table("queries")
    rejects = store.read_table("rejects")
    assert queries.schema.equals(QUERY_SCHEMA) and rejects.schema.equals(REJECT_SCHEMA)
    assert queries.num_rows + rejects.num_rows == n_lines == summary["input"]["rows_read"]
    origins = {r["origin"].rsplit(":", 1)[1] for r in rejects.to_pylist()}
    assert origins == {"5", "6", "7", "8"}
    assert sorted(r["reason"] for r in rejects.to_pylist()) == sorted(
        ["malformed_json", "unknown_record_shape", "invalid_query", "duplicate_id"]
    )


def test_every_query_is_accepted_or_rejected_by_the_teacher_exactly_once(first_run):
    store, summary, _ = first_run
    query_ids = store.column_values("queries", "id")
    accepted = store.read_table("teachers/smollm2/accepted")
    rejected = store.read_table("teachers/smollm2/rejects")
    accepted_ids = [] if accepted is None else accepted.column("id").to_pylist()
    rejected_ids = [] if rejected is None else rejected.column("id").to_pylist()
    assert sorted(accepted_ids + rejected_ids) == sorted(query_ids)
    assert summary["teachers"][0]["accepted"] == len(accepted_ids)
    assert {r["id"]: r["reason"] for r in rejected.to_pylist()}["chat-1"] == "no_judge_configured"


def test_accepted_samples_are_verified_and_in_the_paper_format(first_run):
    store, _, _ = first_run
    accepted = store.read_table("teachers/smollm2/accepted")
    assert accepted is not None and accepted.num_rows >= 1, "SmolLM2 solves at least one one-digit sum"
    assert accepted.schema.equals(SAMPLE_SCHEMA)
    for sample in accepted.to_pylist():
        assert sample["verify_score"] >= 0.9 and sample["verifier"].startswith("math-verify/")
        assert sample["finish_reason"] == "stop" and 1 <= sample["attempts"] <= 2
        assert sample["completion_tokens"] > 0 and sample["prompt_tokens"] > 0
        user, assistant = sample["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert assistant["content"].startswith("<think>\n") and assistant["content"].endswith("\n</answer>")
        assert sample["answer"] in assistant["content"] and sample["think"] in assistant["content"]
        assert len(sample["config_hash"]) == 12


def test_the_response_length_plot_is_written_beside_the_data(first_run):
    store, summary, _ = first_run
    assert summary["plots"] == ["s3://distillery-test/distill-run/plots/response_tokens.png"]
    assert store.fs.cat(store.path("plots/response_tokens.png")).startswith(b"\x89PNG")


def test_attempts_log_covers_every_generated_query(first_run):
    store, _, _ = first_run
    attempts = store.read_table("teachers/smollm2/attempts")
    assert attempts.schema.equals(ATTEMPT_SCHEMA)
    math_ids = {q["id"] for q in EASY_MATH}
    assert set(attempts.column("id").to_pylist()) == math_ids
    accepted = store.read_table("teachers/smollm2/accepted").to_pylist()
    for sample in accepted:
        rounds = {a["attempt"] for a in attempts.to_pylist() if a["id"] == sample["id"]}
        assert max(rounds) == sample["attempts"]


def test_a_second_run_regenerates_nothing_and_duplicates_nothing(first_run, run_job):
    store, summary, _ = first_run
    attempts_before = store.read_table("teachers/smollm2/attempts").num_rows
    run, _ = run_job
    store, again = run()
    accepted = store.column_values("teachers/smollm2/accepted", "id")
    assert again["teachers"][0]["accepted"] == summary["teachers"][0]["accepted"] == len(accepted)
    assert again["teachers"][0]["generated_tokens"] == 0
    assert store.read_table("teachers/smollm2/attempts").num_rows == attempts_before


def test_the_attempts_log_keeps_every_candidate_text(first_run):
    store, _, _ = first_run
    attempts = store.read_table("teachers/smollm2/attempts").to_pylist()
    assert all(a["text"] for a in attempts), "every candidate is kept, failed ones included"
    for sample in store.read_table("teachers/smollm2/accepted").to_pylist():
        passed = [parse_response(a["text"], "plain") for a in attempts if a["id"] == sample["id"] and not a["failure"]]
        assert (sample["think"], sample["answer"]) in [(p.think, p.answer) for p in passed]


def test_jobs_verify_scores_the_attempts_log_again(first_run, s3_server, tmp_path):
    store, _, _ = first_run
    attempts = store.read_table("teachers/smollm2/attempts").to_pylist()
    config = tmp_path / "verify.yaml"
    config.write_text(yaml.safe_dump({"storage_options": s3_server, "ray": {"dashboard": False}}))
    output = tmp_path / "rescored.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "jobs.verify", "--input", store.url + "/teachers/smollm2/attempts",
         "--output", str(output), "--config", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == len(attempts)
    logged = {(a["id"], a["attempt"], a["candidate"]): a for a in attempts}
    for row in rows:
        attempt = logged[(row["id"], row["attempt"]["attempt"], row["attempt"]["candidate"])]
        assert row["response"] == attempt["text"] and row["category"] == "math"
        if attempt["finish_reason"] == "stop":  # a cut-off candidate was never verified, only marked truncated
            assert row["verify_score"] == attempt["score"], "the same verifier gives the same verdict"
