"""`python -m jobs.verify` as a user runs it: real local Ray, verifier actors, every input row back in order."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipeline.response_format import format_response
from tests.conftest import REPO, shared_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def responses(tmp_path_factory):
    math500 = [json.loads(line) for line in shared_file("benchmarks/math500.jsonl").read_text().splitlines()[:6]]
    rows = []
    for row, neighbour in zip(math500, math500[1:] + math500[:1]):
        rows.append({**row, "response": format_response("worked it out", f"\\boxed{{{row['answer']}}}")})
        rows.append({**row, "response": format_response("worked it out", f"\\boxed{{{neighbour['answer']}}}")})
    arc = {"id": "arc-1", "category": "science", "prompt": "Pick one.\nA. x\nB. y", "reference": {"answer": "B"}}
    code = {"id": "dbl", "category": "code", "prompt": "Write f doubling x.",
            "reference": {"tests": {"kind": "assert", "asserts": ["assert f(2) == 4", "assert f(0) == 0"]}}}
    lines = [json.dumps(r) for r in rows] + [
        json.dumps({**code, "response": format_response("double it", "```python\ndef f(x):\n    return x + 2\n```")}),
        json.dumps({**arc, "response": format_response("y is right", "B")}),
        json.dumps({**arc, "response": "<think>never closed"}),
        json.dumps({**arc}),  # no response
        '{"broken json',
    ]
    path = tmp_path_factory.mktemp("verify") / "responses.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, len(rows)


def run_verify(inputs, output, *args):
    result = subprocess.run(
        [sys.executable, "-m", "jobs.verify", "--input", str(inputs), "--output", str(output), "--no-progress", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The summary is the first JSON object printed; Ray may log after it.
    return json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{"):])[0]


def test_every_row_comes_back_in_order_with_its_verdict(responses, tmp_path):
    path, n_math = responses
    output = tmp_path / "scored.jsonl"
    summary = run_verify(path, output)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == n_math + 5 == summary["rows"]
    assert [r["verify_score"] for r in rows[:n_math]] == [1.0, 0.0] * (n_math // 2), "gold passes, neighbour fails"
    assert rows[0]["verifier"].startswith("math-verify/") and rows[0]["problem"]
    failures = [json.loads(r["verify_details"])["failure"] for r in rows[n_math:]]
    assert failures == ["tests_failed", None, "missing_think_close", "missing_response", "malformed_json"]
    assert [r["verify_score"] for r in rows[n_math:]] == [0.5, 1.0, 0.0, 0.0, 0.0], "f(2) == 4 passes, f(0) fails"
    assert rows[-1]["origin"].endswith(f":{n_math + 5}")


def test_parquet_output(responses, tmp_path):
    path, n_math = responses
    output = tmp_path / "scored.parquet"
    run_verify(path, output)
    table = pq.read_table(output)
    assert table.num_rows == n_math + 5
    assert {"verify_score", "verifier", "verify_details"} <= set(table.column_names)


def test_parquet_input_is_read_like_jsonl(responses, tmp_path):
    import pyarrow as pa

    path, n_math = responses
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n_math]]
    parquet = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    output = tmp_path / "scored.jsonl"
    run_verify(parquet, output)
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["verify_score"] for r in scored] == [1.0, 0.0] * (n_math // 2)


JUDGE_CONFIG = """
judge:
  model: smollm2-135m-instruct
  engine: {max_model_len: 2048, enforce_eager: true, cpu_kv_cache_gib: 1}
  sampling: {temperature: 0.0, max_tokens: 128}
  max_retries: 1
"""


def test_chat_general_and_free_form_science_go_to_the_llm_judge(tmp_path):
    arena = json.loads(shared_file("queries/arena_hard_v0.1_questions.jsonl").read_text().splitlines()[0])
    free_science = {"id": "fall", "category": "science", "prompt": "Why do objects fall to the ground?",
                    "reference": {"answer": "Gravity pulls masses toward each other."}}
    rows = [
        {**arena, "response": format_response("the user asks for help", "Here is a careful answer.")},
        {**free_science, "response": format_response("physics", "Gravity: the Earth attracts them.")},
        {"id": "hi", "category": "chat", "prompt": "Say hello.", "response": format_response("greet", "Hello!")},
        {**free_science, "response": "<think>never closed"},
    ]
    path = tmp_path / "free_form.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "judge.yaml"

    without_judge = run_verify(path, tmp_path / "unjudged.jsonl")
    assert without_judge["outcomes"] == {"no_judge_configured": 4}, "no verifier: nothing else is checked"

    config.write_text(JUDGE_CONFIG)
    summary = run_verify(path, tmp_path / "judged.jsonl", "--config", str(config))
    judged = [json.loads(line) for line in (tmp_path / "judged.jsonl").read_text().splitlines()]
    assert summary["rows"] == 4
    assert [r["verifier"] for r in judged] == ["llm-judge/1"] * 3 + ["structure/1"], "structure is checked first"
    for row in judged[:3]:
        details = json.loads(row["verify_details"])
        assert 0.0 <= row["verify_score"] <= 1.0
        # SmolLM2-135M is a weak judge: either it graded (and its reply is kept) or it failed after the retry.
        if details["failure"] is None:
            assert "judge_reply" in details and details["judge_score"] == pytest.approx(row["verify_score"] * 10)
        else:
            assert details["failure"] == "judge_unparseable" and len(details["replies"]) == 2


def run_without_user_namespaces(job: list[str]) -> subprocess.CompletedProcess:
    """The whole job, Ray included, in a user namespace that may create no further ones: no sandbox can isolate."""
    command = " ".join([sys.executable, *job])
    no_more_namespaces = "echo 0 > /proc/sys/user/max_user_namespaces"
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", f"{no_more_namespaces} && {command}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


def test_where_the_nodes_cannot_isolate_code_the_job_refuses_at_start_with_one_message(responses, tmp_path):
    path, _ = responses
    output = tmp_path / "never.jsonl"
    result = run_without_user_namespaces(["-m", "jobs.verify", "--input", str(path), "--output", str(output)])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "verifiers.code: the code sandbox cannot isolate programs" in result.stderr
    assert "code: false" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists(), "no row is scored, and no code runs unisolated"


def test_with_code_verification_off_the_rest_is_scored_and_code_rows_say_why_not(responses, tmp_path):
    path, n_math = responses
    config = tmp_path / "no_code.yaml"
    config.write_text("verifiers: {code: false}\n")
    output = tmp_path / "scored.jsonl"
    result = run_without_user_namespaces(
        ["-m", "jobs.verify", "--input", str(path), "--output", str(output), "--config", str(config), "--no-progress"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["verify_score"] for r in rows[:n_math]] == [1.0, 0.0] * (n_math // 2)
    assert json.loads(rows[n_math]["verify_details"])["failure"] == "code_verification_disabled"
