"""A teacher behind an OpenAI-compatible endpoint: a real vLLM server on loopback (CPU), started by the test."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from actors.openai_engine import OpenAIEngine
from pipeline.config import SamplingConfig, TeacherConfig
from pipeline.engine import RequestFailed
from pipeline.models import materialize_embedded_model
from pipeline.schema import Message
from pipeline.storage import Store
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = materialize_embedded_model()
    log = open(tmp_path_factory.mktemp("server") / "vllm.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
         "--max-model-len", "512", "--enforce-eager"],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, open(log.name).read()[-3000:]
            time.sleep(1)
    yield base_url
    os.killpg(server.pid, 9)
    server.wait()


def teacher(base_url: str, **engine) -> TeacherConfig:
    return TeacherConfig.model_validate(
        {"name": "served", "model": "smollm2", "engine": {"kind": "openai", "base_url": base_url, **engine}}
    )


def ask(engine, text, **sampling):
    return engine.generate([Message(role="user", content=text)], SamplingConfig(**sampling))


def test_candidates_come_back_with_token_counts(endpoint):
    engine = OpenAIEngine(teacher(endpoint))
    candidates = asyncio.run(ask(engine, "What is 2 + 3?", n=2, max_tokens=24, temperature=0.8))
    assert len(candidates) == 2
    assert all(c.text and c.prompt_tokens > 0 and c.completion_tokens > 0 for c in candidates)
    assert {c.finish_reason for c in candidates} <= {"stop", "length"}


def test_a_refused_request_fails_alone(endpoint):
    engine = OpenAIEngine(teacher(endpoint, max_retries=0))
    with pytest.raises(RequestFailed) as refused:
        asyncio.run(ask(engine, "word " * 2000, max_tokens=8))
    assert refused.value.reason == "request_refused"


def test_rate_limit_spaces_requests(endpoint):
    engine = OpenAIEngine(teacher(endpoint, requests_per_s=4))

    async def burst():
        return await asyncio.gather(*(ask(engine, f"Say {i}.", max_tokens=1) for i in range(6)))

    started = time.monotonic()
    asyncio.run(burst())
    assert time.monotonic() - started >= 5 / 4, "6 requests at 4/s need at least 1.25 s"


def test_two_teachers_through_endpoints_give_two_datasets_over_the_same_ids(endpoint, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    sums = [{"id": f"sum-{a}", "category": "math", "prompt": f"What is {a} + 2?", "reference": {"answer": str(a + 2)}}
            for a in (1, 2)]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in sums))
    config = {
        "input": {"paths": [str(corpus)]},
        "output": str(tmp_path / "out"),
        "teachers": [
            {
                "name": name, "model": "smollm2", "response_format": "plain",
                "engine": {"kind": "openai", "base_url": endpoint, "max_concurrency": 4},
                "sampling": {"default": {"n": 2, "max_tokens": 48, "temperature": temperature}},
                "max_attempts": 2,
            }
            for name, temperature in [("cool", 0.3), ("warm", 1.0)]
        ],
        "verifiers": {"replicas": 1},
        "ray": {"dashboard": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "jobs.distill", "--config", str(path), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store(str(tmp_path / "out"))
    for name in ("cool", "warm"):
        attempts = store.read_table(f"teachers/{name}/attempts")
        assert set(attempts.column("id").to_pylist()) == {"sum-1", "sum-2"}
        accepted = store.column_values(f"teachers/{name}/accepted", "id")
        rejected = store.column_values(f"teachers/{name}/rejects", "id")
        assert accepted | rejected == {"sum-1", "sum-2"} and not accepted & rejected
    summary = json.loads(store.read_text("summary.json"))
    assert [t["teacher"] for t in summary["teachers"]] == ["cool", "warm"]
