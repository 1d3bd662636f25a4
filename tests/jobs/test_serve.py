"""`jobs.serve`: a model behind an OpenAI-compatible Ray Serve endpoint, autoscaled.

The fast tests check the job's refusals and its `serve deploy` YAML without Ray. The slow ones share one deployment
of the embedded model on loopback (starting a vLLM replica takes minutes on a loaded 2-core host): its routes answer,
a distill run uses it as its teacher, an evaluation as its model, and it scales from 1 to 2 replicas under load
and back to 1 after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.config import DistillConfig, EvaluateConfig, RayConfig, ServeConfig, parse_config
from pipeline.engine import REQUEST_FAILURES
from pipeline.models import EMBEDDED_MODEL
from pipeline.storage import Store
from tests.conftest import REPO, shared_file

ENGINE = {"num_cpus": 1, "max_model_len": 1024, "enforce_eager": True, "dtype": "float32", "cpu_kv_cache_gib": 1}
# Load is measured every second over the last 2 s; a replica is added as soon as the mean of requests in flight per
# replica exceeds 2, and removed after 5 s below it.
AUTOSCALING = {
    "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 0,
    "downscale_delay_s": 5, "metrics_interval_s": 1, "look_back_period_s": 2,
}
REPLICA_START_S = 900  # a vLLM replica starts in about 1 minute idle, in several on a host shared with other tests


def serve_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.serve", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def write_config(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"model": EMBEDDED_MODEL, "engine": ENGINE, **fields}))
    return path


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "autoscaling: Value error, min_replicas (3)"),
        ({"autoscaling": {"target_ongoing_request": 4}}, "autoscaling.target_ongoing_request: Extra inputs"),
        ({"engine": {**ENGINE, "replicas": 2}}, "engine: Value error, replicas sizes a fixed actor pool"),
        ({"engine": {"kind": "openai", "base_url": "http://x/v1"}}, "engine.kind: Input should be 'vllm'"),
        ({"http": {"port": 0}}, "http.port: Input should be greater than or equal to 1"),
        ({"model": "./no/such/student"}, "model ./no/such/student: no such model folder"),
    ],
    ids=["min-above-max", "misspelt-field", "fixed-pool", "not-a-local-engine", "bad-port", "missing-model"],
)
def test_a_bad_config_exits_2_naming_the_field_before_ray_starts(tmp_path, fields, named):
    result = serve_job("--config", str(write_config(tmp_path, **fields)))
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Ray" not in result.stderr and "ray" not in result.stdout


def test_the_deploy_config_builds_the_same_app_from_the_config_as_written(tmp_path):
    config_path = write_config(tmp_path, autoscaling=AUTOSCALING, http={"host": "0.0.0.0", "port": 8123})
    out = tmp_path / "deploy.yaml"
    result = serve_job("--config", str(config_path), "--print-deploy-config", str(out))
    assert result.returncode == 0, result.stderr

    deploy = yaml.safe_load(out.read_text())
    assert deploy["http_options"] == {"host": "0.0.0.0", "port": 8123}
    [app] = deploy["applications"]
    assert (app["name"], app["route_prefix"], app["import_path"]) == ("distillery", "/", "actors.serve_app:build_app")
    written = parse_config(ServeConfig, yaml.safe_load(config_path.read_text()))
    rebuilt = parse_config(ServeConfig, app["args"])
    assert rebuilt.model_dump(exclude={"http"}) == written.model_dump(exclude={"http"})


def test_a_training_run_is_served_from_its_model_folder_under_the_run_name(tmp_path):
    run = tmp_path / "student-run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    result = serve_job("--config", str(write_config(tmp_path, model=str(run))), "--print-deploy-config", "-")
    assert result.returncode == 0, result.stderr
    [app] = yaml.safe_load(result.stdout)["applications"]
    assert (app["args"]["model"], app["args"]["served_model_name"]) == (str(run / "model"), "student-run")


def test_the_shipped_configs_agree():
    """configs/serve_deploy.yaml is what `--print-deploy-config` makes of configs/serve.yaml."""
    result = serve_job("--config", "configs/serve.yaml", "--print-deploy-config", "-")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == yaml.safe_load((REPO / "configs" / "serve_deploy.yaml").read_text())


@pytest.fixture(scope="module")
def endpoint():
    """The embedded model served on loopback by the job's own deploy path, in a local Ray cluster of this process."""
    import ray

    from actors.cluster import connect_ray
    from actors.serve_app import deploy, shutdown

    config = parse_config(ServeConfig, {
        "model": EMBEDDED_MODEL, "engine": ENGINE, "autoscaling": AUTOSCALING, "max_ongoing_requests": 16,
        "http": {"host": "127.0.0.1", "port": free_port()},
    })
    # Room for two replicas, the ingress and a distill run's teacher client, verifier and Ray Data tasks.
    connect_ray(RayConfig(num_cpus=8, dashboard=False), 8)
    started = time.monotonic()
    url = deploy(config, timeout_s=REPLICA_START_S)
    print(f"first replica up in {time.monotonic() - started:.0f} s")
    yield config, url
    shutdown(config.app_name)
    ray.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 600) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def chat(base_url: str, content: str, **params) -> dict:
    body = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": content}], **params}
    return post(f"{base_url}/chat/completions", body)


@pytest.mark.slow
def test_the_endpoint_lists_its_model_and_answers_chats_with_n_choices_and_usage(endpoint):
    _, url = endpoint
    with urllib.request.urlopen(f"{url}/models", timeout=60) as response:
        models = json.load(response)
    assert [m["id"] for m in models["data"]] == [EMBEDDED_MODEL]

    reply = chat(url, "What is 2 + 3?", n=2, max_tokens=8, temperature=0.8, seed=0)
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    assert all(c["message"]["content"] for c in reply["choices"])
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 5
    assert 2 <= usage["completion_tokens"] <= 2 * 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    completion = post(f"{url}/completions", {"model": EMBEDDED_MODEL, "prompt": "1, 2, 3,", "max_tokens": 4})
    assert completion["choices"][0]["text"]


@pytest.mark.slow
def test_a_distill_run_uses_the_endpoint_as_its_teacher(endpoint, tmp_path):
    from actors.distill_run import run_distill

    _, url = endpoint
    config = parse_config(DistillConfig, {
        "input": {"paths": [str(shared_file("benchmarks/gsm8k_test.jsonl"))], "limit": 3},
        "output": str(tmp_path / "run"),
        "teachers": [{
            "name": "served", "model": EMBEDDED_MODEL, "response_format": "plain",
            # Two requests in flight stay at the autoscaling target: this run leaves the deployment at one replica.
            "engine": {"kind": "openai", "base_url": url, "max_concurrency": 2, "timeout_s": 600},
            "sampling": {"default": {"max_tokens": 48, "n": 1}},
            "max_attempts": 1,
        }],
        "verifiers": {"replicas": 1, "num_cpus": 0.5},
        "ray": {"dashboard": False},
        "shard_rows": 4,
        "flush_seconds": 1,
    })
    summary = run_distill(config, progress=False)

    store = Store(config.output)
    queries = store.read_table("queries", columns=["id"]).column("id").to_pylist()
    accepted = store.read_table("teachers/served/accepted", columns=["id"])
    rejects = store.read_table("teachers/served/rejects", columns=["id", "reason"])
    accepted = [] if accepted is None else accepted.column("id").to_pylist()
    rejected = {} if rejects is None else dict(zip(*(rejects.column(c).to_pylist() for c in ("id", "reason"))))
    assert len(queries) == 3
    assert sorted(accepted + list(rejected)) == sorted(queries), "every query accepted or rejected, once"
    assert not REQUEST_FAILURES & set(rejected.values()), f"the endpoint answered every request: {rejected}"
    assert summary["teachers"][0]["generated_tokens"] > 0


@pytest.mark.slow
def test_an_evaluation_scores_the_served_model(endpoint, tmp_path):
    from actors.evaluate_run import run_evaluate

    _, url = endpoint
    config = parse_config(EvaluateConfig, {
        "models": [{
            "name": "served", "model": EMBEDDED_MODEL, "response_format": "answer_only", "system_prompt": "",
            "engine": {"kind": "openai", "base_url": url, "max_concurrency": 2, "timeout_s": 600},
            "sampling": {"max_tokens": 48},
        }],
        "benchmarks": [{"name": "gsm8k", "path": str(shared_file("benchmarks/gsm8k_test.jsonl")), "limit": 2,
                        "samples": 2}],
        "ks": [1, 2],
        "output": str(tmp_path / "eval"),
        "verifiers": {"replicas": 1, "num_cpus": 0.5, "code": False},
        "ray": {"dashboard": False},
        "flush_seconds": 1,
    })
    results = run_evaluate(config, progress=False)

    samples = Store(config.output).read_table("models/served/gsm8k/samples")
    assert samples.num_rows == 4, "2 problems x 2 samples, each from the endpoint"
    assert set(samples.column("finish_reason").to_pylist()) <= {"stop", "length"}
    metrics = results["models"]["served"]["gsm8k"]
    assert metrics["problems"] == 2 and metrics["samples"] == 4
    assert results["protocol"]["models"]["served"]["base_url"] == url, "the number is traced to the endpoint"


@pytest.mark.slow
def test_the_deployment_scales_to_two_replicas_under_load_and_back_to_one(endpoint):
    from actors.serve_app import running_replicas

    config, url = endpoint
    wait_for(lambda: running_replicas(config.app_name) == 1, 300, "one replica before the load")
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            chat(url, "Count from 1 to 100.", max_tokens=64)

    clients = [threading.Thread(target=keep_asking, daemon=True) for _ in range(8)]
    started = time.monotonic()
    for client in clients:
        client.start()
    try:
        wait_for(lambda: running_replicas(config.app_name) == 2, REPLICA_START_S, "a second replica under load")
        print(f"scaled up to 2 replicas {time.monotonic() - started:.0f} s after the load started")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=600)
    idle = time.monotonic()
    wait_for(lambda: running_replicas(config.app_name) == 1, 300, "back to one replica when idle")
    print(f"scaled down to 1 replica {time.monotonic() - idle:.0f} s after the load stopped")


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(1)
