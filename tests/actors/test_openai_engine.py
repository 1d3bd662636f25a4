"""A teacher behind an OpenAI-compatible endpoint: a real vLLM server on loopback (CPU), started by the test, and a
scripted one that answers the way reasoning APIs do (reasoning beside the content) and records what it was sent."""

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
from pipeline.response_format import parse_response
from pipeline.schema import Message
from pipeline.storage import Store
from tests.chat_server import ChatServer, completion
from tests.conftest import REPO

slow = pytest.mark.slow


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
         "--max-model-len", "512", "--enforce-eager", "--dtype", "float32"],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600  # a loaded 2-core host has taken over 5 minutes to start it
    try:  # a server that never came up is ended too, not left running for the rest of the session
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, open(log.name).read()[-3000:]
                time.sleep(1)
        yield base_url
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def teacher(base_url: str, **engine) -> TeacherConfig:
    return TeacherConfig.model_validate(
        {"name": "served", "model": "smollm2", "engine": {"kind": "openai", "base_url": base_url, **engine}}
    )


def ask(engine, text, **sampling):
    return engine.generate([Message(role="user", content=text)], SamplingConfig(**sampling))


@slow
def test_candidates_come_back_with_token_counts(endpoint):
    engine = OpenAIEngine(teacher(endpoint))
    candidates = asyncio.run(ask(engine, "What is 2 + 3?", n=2, max_tokens=24, temperature=0.8))
    assert len(candidates) == 2
    assert all(c.text and c.prompt_tokens > 0 and c.completion_tokens > 0 for c in candidates)
    assert {c.finish_reason for c in candidates} <= {"stop", "length"}


@slow
def test_a_refused_request_fails_alone(endpoint):
    engine = OpenAIEngine(teacher(endpoint, max_retries=0))
    with pytest.raises(RequestFailed) as refused:
        asyncio.run(ask(engine, "word " * 2000, max_tokens=8))
    assert refused.value.reason == "request_refused"


@slow
def test_rate_limit_spaces_requests(endpoint):
    engine = OpenAIEngine(teacher(endpoint, requests_per_s=4))

    async def burst():
        return await asyncio.gather(*(ask(engine, f"Say {i}.", max_tokens=1) for i in range(6)))

    started = time.monotonic()
    asyncio.run(burst())
    assert time.monotonic() - started >= 5 / 4, "6 requests at 4/s need at least 1.25 s"


@slow
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


# --- Reasoning served beside the answer: a scripted server -----------------------------------------------------------


@pytest.fixture
def scripted():
    """Starts servers that answer every chat completion with `n` copies of a message (choice i's strings formatted
    with i)."""
    servers = []

    def start(**message):
        def respond(body):
            copies = [{k: v.format(i=i) if isinstance(v, str) else v for k, v in message.items()}
                      for i in range(body.get("n") or 1)]
            return completion(body, copies)

        servers.append(ChatServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    "message, source, think, answer, failure",
    [
        ({"reasoning_content": "Add: {i} + 5.", "content": "{i}5"}, "auto", "Add: {i} + 5.", "{i}5", None),
        ({"reasoning": "Add: {i} + 5.", "content": "{i}5"}, "auto", "Add: {i} + 5.", "{i}5", None),
        ({"reasoning_content": "Add: {i} + 5.", "content": "{i}5"}, "field", "Add: {i} + 5.", "{i}5", None),
        ({"content": "<think>Add: {i} + 5.</think>\n{i}5"}, "auto", "Add: {i} + 5.", "{i}5", None),
        ({"content": "<think>Add: {i} + 5.</think>\n{i}5"}, "field", "", "", "empty_think"),
        ({"reasoning_content": "hidden", "content": "{i}5"}, "tags", "", "", "missing_think"),
        ({"reasoning_content": "hidden", "content": "<think>Add: {i}.</think>{i}5"}, "tags", "Add: {i}.", "{i}5", None),
    ],
    ids=["reasoning_content", "reasoning", "field-required", "content-tags", "field-required-but-absent",
         "tags-ignore-field", "tags-use-content"],
)
def test_candidates_from_a_reasoning_endpoint_parse_as_think_then_answer(
    scripted, message, source, think, answer, failure
):
    server = scripted(**message)
    engine = OpenAIEngine(teacher(server.base_url, reasoning=source, max_retries=0))
    candidates = asyncio.run(ask(engine, "What is 2 + 3?", n=2))
    assert [c.completion_tokens for c in candidates] == [10, 10]
    parsed = [parse_response(c.text, "think_then_answer") for c in candidates]
    assert [(p.think, p.answer, p.failure) for p in parsed] == [
        (think.format(i=i), answer.format(i=i), failure) for i in range(2)
    ]


def test_extra_body_and_chat_template_kwargs_reach_the_server(scripted):
    server = scripted(content="<think>t</think>\na")
    engine = OpenAIEngine(teacher(
        server.base_url,
        extra_body={"top_k": 20, "chat_template_kwargs": {"thinking_budget": 512}},
        chat_template_kwargs={"enable_thinking": True},
    ))
    asyncio.run(ask(engine, "Hi", n=1))
    (body,) = server.bodies
    assert body["top_k"] == 20
    assert body["chat_template_kwargs"] == {"thinking_budget": 512, "enable_thinking": True}


def test_nothing_extra_is_sent_by_default(scripted):
    server = scripted(content="a")
    asyncio.run(ask(OpenAIEngine(teacher(server.base_url)), "Hi"))
    (body,) = server.bodies
    assert "chat_template_kwargs" not in body and "top_k" not in body
