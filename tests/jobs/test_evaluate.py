"""`python -m jobs.evaluate` as a user runs it: a real local Ray cluster, the embedded SmolLM2 on vLLM, Math-Verify,
Parquet on a real S3-compatible server (moto). One evaluation is made in two runs: the first, with smaller limits
and one problem at a time, is killed (the whole process group: driver, Ray, engine) once it has committed a problem;
the second, with the full limits, finishes it. So the evaluation every assertion reads is both a killed-and-resumed
one and one whose limit grew (two engine starts in all). Bad configs and benchmark paths are refused before Ray
starts."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.compute as pc
import pytest
import yaml

from pipeline.eval_metrics import benchmark_metrics, pass_at_k
from pipeline.schema import EVAL_SAMPLE_SCHEMA
from pipeline.storage import Store
from tests.conftest import REPO, shared_file

OUTPUT = "s3://distillery-test/evaluate-run"
SAMPLES = 2
LIMITS = {"gsm8k": 3, "math500": 2}
FIRST_LIMITS = {"gsm8k": 2, "math500": 2}


def write_config(path, s3_server, limits: dict[str, int], batches_in_flight: int = 8, **changes) -> None:
    config = {
        "output": OUTPUT,
        "storage_options": s3_server,
        "models": [{
            "name": "smollm2",
            "model": "smollm2-135m-instruct",
            "response_format": "answer_only",
            "system_prompt": "",
            "engine": {"max_model_len": 1024, "enforce_eager": True, "dtype": "float32",
                       "batches_in_flight": batches_in_flight},
            "sampling": {"max_tokens": 160},
        }],
        "benchmarks": [
            {"name": name, "path": str(shared_file(f"benchmarks/{file}")), "limit": limits[name], "samples": SAMPLES}
            for name, file in (("gsm8k", "gsm8k_test.jsonl"), ("math500", "math500.jsonl"))
        ],
        "ks": [1, 2, 4],
        "verifiers": {"replicas": 1, "code": False},
        "ray": {"dashboard": False},
        "shard_rows": 2,
        "flush_seconds": 1,
        **changes,
    }
    path.write_text(yaml.safe_dump(config))


def evaluate(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.evaluate", "--config", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
    )


def committed_problems(store: Store) -> int:
    tables = (store.read_table(f"models/smollm2/{name}/samples", columns=["problem_id"]) for name in LIMITS)
    return sum(0 if t is None else len(set(t.column("problem_id").to_pylist())) for t in tables)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, s3_server):
    """The first run (2 + 2 problems, one at a time) killed after its first committed problem, what it committed,
    then the second run over all 3 + 2 problems."""
    root = tmp_path_factory.mktemp("evaluate")
    config = root / "evaluate.yaml"
    store = Store(OUTPUT, s3_server)
    # batches_in_flight is a scale setting, outside the config hash: the second run may change it.
    write_config(config, s3_server, FIRST_LIMITS, batches_in_flight=1)
    first = subprocess.Popen(
        [sys.executable, "-m", "jobs.evaluate", "--config", str(config), "--no-progress"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 900
    while committed_problems(store) < 1:
        assert first.poll() is None, first.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "the first problem was never committed"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {name: store.read_table(f"models/smollm2/{name}/samples") for name in LIMITS}
    assert 1 <= committed_problems(store) < sum(FIRST_LIMITS.values()), "killed mid-run"
    write_config(config, s3_server, LIMITS)
    second = evaluate(config)
    assert second.returncode == 0, second.stderr[-4000:]
    return store, before, json.loads(store.read_text("results.json")), second.stdout


@pytest.mark.slow
def test_every_problem_gets_all_its_samples_scored_in_parquet(evaluation):
    store, _, results, _ = evaluation
    for name, limit in LIMITS.items():
        samples = store.read_table(f"models/smollm2/{name}/samples")
        assert samples.schema.equals(EVAL_SAMPLE_SCHEMA)
        per_problem = Counter(samples.column("problem_id").to_pylist())
        assert len(per_problem) == limit and set(per_problem.values()) == {SAMPLES}
        for row in samples.to_pylist():
            assert row["model"] == "smollm2" and row["benchmark"] == name and row["category"] == "math"
            assert row["finish_reason"] in ("stop", "length") and row["completion_tokens"] > 0
            assert row["correct"] == (row["score"] >= 1.0 and row["failure"] is None)
            if row["finish_reason"] == "length":
                assert row["failure"] == "truncated" and not row["correct"]
            else:
                assert row["verifier"].startswith("math-verify/"), row["verifier"]
            assert row["config_hash"] == results["config_hash"]
        assert sorted(samples.column("sample").to_pylist()) == sorted(list(range(SAMPLES)) * limit)
        assert store.read_table(f"models/smollm2/{name}/rejects") is None, "every problem could be posed and asked"


@pytest.mark.slow
def test_results_are_a_recount_of_the_committed_samples(evaluation):
    store, _, results, stdout = evaluation
    for name, limit in LIMITS.items():
        samples = store.read_table(f"models/smollm2/{name}/samples")
        metrics = results["models"]["smollm2"][name]
        assert metrics == benchmark_metrics(samples, [1, 2])
        # pass@1 by hand: the mean over problems of each problem's share of correct samples
        shares = [
            pc.sum(samples.filter(pc.equal(samples.column("problem_id"), pid)).column("correct").cast("int64"))
            .as_py() / SAMPLES for pid in set(samples.column("problem_id").to_pylist())
        ]
        assert metrics["pass@1"] == round(100 * sum(shares) / limit, 2)
        correct = Counter(r["problem_id"] for r in samples.to_pylist() if r["correct"])
        pass2 = sum(pass_at_k(SAMPLES, correct[p], 2) for p in set(samples.column("problem_id").to_pylist())) / limit
        assert metrics["pass@2"] == round(100 * pass2, 2)
        assert "pass@4" not in metrics and "cons@4" not in metrics, "a k above the samples per problem is left out"
        assert results["coverage"]["smollm2"][name] == {
            "problems": limit, "scored": limit, "rejected": {}, "rows_not_posed": {}
        }
    assert "pass@1" in stdout and "gsm8k" in stdout and "math500" in stdout


@pytest.mark.slow
def test_results_record_the_protocol(evaluation):
    _, _, results, _ = evaluation
    protocol = results["protocol"]
    model = protocol["models"]["smollm2"]
    assert model["sampling"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 160, "seed": 0}
    assert len(model["fingerprint"]["sha256"]) == 64 and model["fingerprint"]["weight_files"] >= 1
    assert model["vllm_version"] and model["dtype"] == "float32" and model["tensor_parallel_size"] == 1
    prompt = model["first_prompt"]["math500"]
    assert [m["role"] for m in prompt] == ["user"], "an empty system prompt sends none"
    assert prompt[0]["content"].endswith("output the final answer within \\boxed{}.")
    assert protocol["benchmarks"]["gsm8k"]["samples_per_problem"] == SAMPLES
    assert protocol["config_hash"] == results["config_hash"] and protocol["date"]


@pytest.mark.slow
def test_the_report_is_written(evaluation, s3_server):
    store, _, results, _ = evaluation
    assert results["report"].endswith("report/report.html")
    html = store.read_text("report/report.html")
    assert "smollm2" in html and "math500" in html
    assert store.fs.cat(store.path("report/accuracy.png")).startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_killed_evaluation_resumes_without_generating_a_finished_problem_again(evaluation):
    store, before, results, _ = evaluation
    committed_before = sum(0 if t is None else len(set(t.column("problem_id").to_pylist())) for t in before.values())
    # The second run generated only the problems the killed one had not committed...
    assert results["this_run"]["smollm2"]["problems"] == sum(LIMITS.values()) - committed_before
    assert results["this_run"]["smollm2"]["samples"] == SAMPLES * results["this_run"]["smollm2"]["problems"]
    for name in LIMITS:
        if before[name] is None:
            continue
        after = store.read_table(f"models/smollm2/{name}/samples")
        kept = {r["problem_id"] for r in before[name].to_pylist()}
        # ...and the first run's samples are still there, exactly as written, once each.
        old_rows = sorted((r["problem_id"], r["sample"], r["response"]) for r in after.to_pylist()
                          if r["problem_id"] in kept)
        assert old_rows == sorted((r["problem_id"], r["sample"], r["response"]) for r in before[name].to_pylist())


# ---- refused before Ray starts -------------------------------------------------------------------------------------


def refused(tmp_path, s3_server, **changes) -> str:
    config = tmp_path / "evaluate.yaml"
    write_config(config, s3_server, FIRST_LIMITS, **changes)
    result = evaluate(config)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "local Ray cluster" not in result.stdout
    return result.stderr


@pytest.mark.parametrize(
    "model_change, field",
    [
        pytest.param({"sampling": {"temperature": 3.0}}, "models.0.sampling.temperature", id="temperature"),
        pytest.param({"sampling": {"n": 4}}, "models.0.sampling", id="n-is-per-benchmark"),
        pytest.param({"engine": {"max_model_len": 128}}, "engine.max_model_len", id="no-room-for-max-tokens"),
        pytest.param({"tempreature": 0.6}, "models.0.tempreature", id="typo"),
    ],
)
def test_a_bad_model_field_is_named_before_ray_starts(tmp_path, s3_server, model_change, field):
    config = tmp_path / "evaluate.yaml"
    write_config(config, s3_server, FIRST_LIMITS)
    raw = yaml.safe_load(config.read_text())
    raw["models"][0].update(model_change)
    config.write_text(yaml.safe_dump(raw))
    result = evaluate(config)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert field in result.stderr, result.stderr


def test_an_unknown_benchmark_is_named(tmp_path, s3_server):
    stderr = refused(tmp_path, s3_server, benchmarks=[{"name": "aime2099", "path": "x.jsonl"}])
    assert "benchmarks.0.name" in stderr and "aime2099" in stderr


def test_a_missing_benchmark_file_is_named(tmp_path, s3_server):
    missing = tmp_path / "no-such-gsm8k.jsonl"
    stderr = refused(tmp_path, s3_server, benchmarks=[{"name": "gsm8k", "path": str(missing)}])
    assert len(stderr.strip().splitlines()) == 1
    assert "benchmarks.0.path" in stderr and str(missing) in stderr


def test_a_benchmark_read_from_a_file_needs_its_path(tmp_path, s3_server):
    stderr = refused(tmp_path, s3_server, benchmarks=[{"name": "livecodebench"}])
    assert "benchmarks.0" in stderr and "path" in stderr


@pytest.mark.slow
def test_an_endpoint_that_refuses_every_request_stops_the_model_and_the_fixed_run_finishes(tmp_path):
    """A bad key: the circuit breaker stops the model with one message and commits nothing, so the same command after
    the fix evaluates every problem instead of finding them rejected."""
    from tests.chat_server import ChatServer, completion, error

    denied = {"all": True}

    def respond(body):
        if denied["all"]:
            return error(401, "Incorrect API key provided")
        return completion(body, [{"content": "The answer is \\boxed{0}."}] * body.get("n", 1))

    server = ChatServer(respond)
    try:
        config = tmp_path / "evaluate.yaml"
        config.write_text(yaml.safe_dump({
            "output": str(tmp_path / "out"),
            "models": [{
                "name": "hosted", "model": "scripted", "response_format": "answer_only", "system_prompt": "",
                "engine": {"kind": "openai", "base_url": server.base_url, "max_retries": 0},
                "request_attempts": 2, "faults": {"backoff_s": 0.05, "breaker_window": 2},
                "sampling": {"max_tokens": 64},
            }],
            "benchmarks": [{"name": "gsm8k", "path": str(shared_file("benchmarks/gsm8k_test.jsonl")), "limit": 4,
                            "samples": 2}],
            "verifiers": {"replicas": 1, "code": False},
            "ray": {"dashboard": False},
            "flush_seconds": 1,
        }))
        stopped = evaluate(config)
        assert stopped.returncode == 1, stopped.stderr[-3000:]
        assert "model hosted stopped" in stopped.stderr and "401" in stopped.stderr, stopped.stderr[-3000:]
        store = Store(str(tmp_path / "out"))
        assert store.read_table("models/hosted/gsm8k/samples") is None
        assert store.read_table("models/hosted/gsm8k/rejects") is None, "no problem is rejected for the key's fault"

        denied["all"] = False
        fixed = evaluate(config)
        assert fixed.returncode == 0, fixed.stderr[-3000:]
        samples = store.read_table("models/hosted/gsm8k/samples")
        assert samples.num_rows == 4 * 2 and set(samples.column("answer").to_pylist()) == {"0"}
    finally:
        server.close()
