"""`python -m jobs.verify` as a user runs it: real local Ray, verifier actors, every input row back in order, written
whole or not at all. (Bad paths, refused before Ray starts: tests/jobs/test_job_cli.py.)"""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from actors.verify_run import write_records
from pipeline.response_format import format_response
from pipeline.storage import filesystem
from tests.conftest import REPO, shared_file

slow = pytest.mark.slow


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


def run_verify(inputs, output, *args, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "jobs.verify", "--input", str(inputs), "--output", str(output), "--no-progress", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The summary is the first JSON object printed; Ray may log after it.
    return json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{"):])[0], result


@slow
def test_every_row_comes_back_in_order_with_its_verdict(responses, tmp_path):
    path, n_math = responses
    output = tmp_path / "scored.jsonl"
    summary, _ = run_verify(path, output)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == n_math + 5 == summary["rows"]
    assert [r["verify_score"] for r in rows[:n_math]] == [1.0, 0.0] * (n_math // 2), "gold passes, neighbour fails"
    assert rows[0]["verifier"].startswith("math-verify/") and rows[0]["problem"]
    failures = [json.loads(r["verify_details"])["failure"] for r in rows[n_math:]]
    assert failures == ["tests_failed", None, "missing_think_close", "missing_response", "malformed_json"]
    assert [r["verify_score"] for r in rows[n_math:]] == [0.5, 1.0, 0.0, 0.0, 0.0], "f(2) == 4 passes, f(0) fails"
    assert rows[-1]["origin"].endswith(f":{n_math + 5}")


@slow
def test_the_terminal_shows_the_summary_and_warnings_not_rays_info_logs(responses, tmp_path):
    path, _ = responses
    quiet_env = {k: v for k, v in os.environ.items() if k != "DISTILLERY_RAY_LOGS"}
    _, quiet = run_verify(path, tmp_path / "quiet.jsonl", env=quiet_env)
    assert " INFO " not in quiet.stdout + quiet.stderr, quiet.stderr
    _, verbose = run_verify(path, tmp_path / "verbose.jsonl", env={**os.environ, "DISTILLERY_RAY_LOGS": "1"})
    assert "INFO streaming_executor.py" in verbose.stderr, "asked for, Ray Data's execution logs are shown"


@slow
def test_parquet_output(responses, tmp_path):
    path, n_math = responses
    output = tmp_path / "scored.parquet"
    run_verify(path, output)
    table = pq.read_table(output)
    assert table.num_rows == n_math + 5
    assert {"verify_score", "verifier", "verify_details"} <= set(table.column_names)


@slow
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
  engine: {max_model_len: 2048, enforce_eager: true, dtype: float32, cpu_kv_cache_gib: 1}
  sampling: {temperature: 0.0, max_tokens: 128}
  max_retries: 1
"""


@slow
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

    without_judge, _ = run_verify(path, tmp_path / "unjudged.jsonl")
    assert without_judge["outcomes"] == {"no_judge_configured": 4}, "no verifier: nothing else is checked"

    config.write_text(JUDGE_CONFIG)
    summary, _ = run_verify(path, tmp_path / "judged.jsonl", "--config", str(config))
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


@slow
def test_where_the_nodes_cannot_isolate_code_the_job_refuses_at_start_with_one_message(responses, tmp_path):
    path, _ = responses
    output = tmp_path / "never.jsonl"
    result = run_without_user_namespaces(["-m", "jobs.verify", "--input", str(path), "--output", str(output)])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "verifiers.code: the code sandbox cannot isolate programs" in result.stderr
    assert "code: false" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists(), "no row is scored, and no code runs unisolated"


@slow
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


ANSWER_ONLY_CONFIG = "response_format: answer_only\n"


@slow
def test_answer_only_responses_are_scored_by_every_verifier_without_tags(tmp_path):
    """Another system's answers, with no reasoning shown: the whole response is the answer."""
    math500 = [json.loads(line) for line in shared_file("benchmarks/math500.jsonl").read_text().splitlines()[:2]]
    right, other = math500
    rows = [
        {**right, "response": f"Working it out, the answer is $\\boxed{{{right['answer']}}}$."},
        {**right, "response": f"\\boxed{{{other['answer']}}}"},
        {**right, "response": f"<think>worked it out</think>\n\\boxed{{{right['answer']}}}"},
        {"id": "arc-1", "category": "science", "prompt": "Pick one.\nA. x\nB. y", "reference": {"answer": "B"},
         "response": "The answer is B."},
        {"id": "dbl", "category": "code", "prompt": "Write f doubling x.",
         "reference": {"tests": {"kind": "assert", "asserts": ["assert f(2) == 4", "assert f(0) == 0"]}},
         "response": "```python\ndef f(x):\n    return 2 * x\n```"},
        {"id": "if-1", "category": "instruction_following", "prompt": "Answer without commas.",
         "reference": {"instructions": [{"id": "punctuation:no_comma", "kwargs": {}}]},
         "response": "No commas in this answer."},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "answer_only.yaml"
    config.write_text(ANSWER_ONLY_CONFIG)
    output = tmp_path / "scored.jsonl"
    summary, _ = run_verify(path, output, "--config", str(config))
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["verify_score"] for r in scored] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0], [r["verify_details"] for r in scored]
    assert summary["outcomes"] == {"passed": 5, "wrong_answer": 1}


def records(count: int, fail_at: int | None = None):
    for i in range(count):
        if i == fail_at:
            raise RuntimeError("the scoring stopped")
        yield {"id": f"q{i}", "verify_score": 1.0, "verifier": "math-verify/0.9", "verify_details": "{}"}


def read_back(path: str, storage_options: dict) -> list[dict]:
    fs, fs_path = filesystem(path, storage_options)
    if path.endswith(".parquet"):
        return pq.read_table(fs_path, filesystem=fs).to_pylist()
    return [json.loads(line) for line in fs.cat(fs_path).decode().splitlines()]


@pytest.mark.parametrize("name", ["scored.jsonl", "scored.parquet"])
def test_the_output_appears_whole_or_not_at_all(tmp_path, name):
    output = str(tmp_path / "new" / name)
    with pytest.raises(RuntimeError):
        write_records(records(5, fail_at=3), output, {})
    assert not os.path.exists(output), "no partial file"

    write_records(records(3), output, {})
    earlier = read_back(output, {})
    assert [r["id"] for r in earlier] == ["q0", "q1", "q2"]
    with pytest.raises(RuntimeError):
        write_records(records(5, fail_at=4), output, {})
    assert read_back(output, {}) == earlier, "a failed run keeps the earlier output"
    assert os.listdir(tmp_path / "new") == [name], "and leaves no temporary file beside it"


@pytest.mark.parametrize("name", ["scored.jsonl", "scored.parquet"])
def test_on_object_storage_the_output_is_one_upload(s3_server, name):
    output = f"s3://distillery-test/verify/{name}"
    with pytest.raises(RuntimeError):
        write_records(records(5, fail_at=3), output, s3_server)
    fs, fs_path = filesystem(output, s3_server)
    assert not fs.exists(fs_path)
    write_records(records(3), output, s3_server)
    assert [r["id"] for r in read_back(output, s3_server)] == ["q0", "q1", "q2"]
