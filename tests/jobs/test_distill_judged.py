"""Distilling what only a judge can check: chat (multi-turn, MT-Bench) and general (Arena-Hard) queries, with the
embedded SmolLM2 as both teacher and judge, each on its own vLLM engine. Slow: two engine starts."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO, shared_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("judged")
    mt_bench = [json.loads(line) for line in shared_file("queries/mt_bench_questions.jsonl").read_text().splitlines()]
    arena = shared_file("queries/arena_hard_v0.1_questions.jsonl").read_text().splitlines()[:1]
    corpus = root / "corpus.jsonl"
    corpus.write_text(json.dumps(mt_bench[0]) + "\n" + arena[0] + "\n")
    engine = {"max_model_len": 2048, "enforce_eager": True, "dtype": "float32", "batches_in_flight": 4}
    config = {
        "input": {"paths": [str(corpus)]},
        "output": str(root / "out"),
        "teachers": [{
            "name": "smollm2", "model": "smollm2-135m-instruct", "response_format": "plain", "engine": engine,
            "system_prompt": "Answer briefly, in at most three sentences.",
            "sampling": {"default": {"temperature": 0.8, "max_tokens": 320, "n": 2, "seed": 3}}, "max_attempts": 3,
            "accept_threshold": 0.6,
        }],
        "judge": {"model": "smollm2-135m-instruct", "engine": engine, "sampling": {"max_tokens": 96},
                  "max_retries": 1},
        "verifiers": {"replicas": 1},
        "ray": {"dashboard": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "jobs.distill", "--config", str(root / "config.yaml"), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "out" / "teachers" / "smollm2"


def read(folder):
    return pq.read_table(folder).to_pylist() if folder.exists() and any(folder.iterdir()) else []


def test_every_generated_candidate_is_graded_by_the_judge(judged_run):
    queries = read(judged_run.parent.parent / "queries")
    assert sorted(q["category"] for q in queries) == ["chat", "general"]
    attempts = read(judged_run / "attempts")
    assert {a["id"] for a in attempts} == {q["id"] for q in queries}, "both were generated for, none skipped"
    assert any(a["verifier"] == "llm-judge/1" for a in attempts), "some candidates reached the judge"
    for attempt in attempts:
        details = json.loads(attempt["verify_details"])
        assert attempt["verifier"] in ("llm-judge/1", "structure/1", "length"), attempt
        if attempt["verifier"] == "llm-judge/1":
            assert "judge_reply" in details or attempt["failure"] == "judge_unparseable"


def test_each_query_ends_accepted_or_rejected_and_accepted_turns_passed_the_judge(judged_run):
    accepted, rejected = read(judged_run / "accepted"), read(judged_run / "rejects")
    assert len(accepted) + len(rejected) == 2
    attempts = read(judged_run / "attempts")
    for sample in accepted:
        assert sample["verifier"] == "llm-judge/1" and sample["verify_score"] >= 0.6
        user_turns = [m for m in sample["messages"] if m["role"] == "user"]
        assert len(sample["messages"]) == 2 * len(user_turns)
        passed_turns = {a["turn"] for a in attempts if a["id"] == sample["id"] and a["failure"] is None}
        assert passed_turns == set(range(len(user_turns))), "every turn was judged good enough"
    for reject in rejected:
        assert reject["reason"] == "exhausted" and reject["attempts"] == 3
