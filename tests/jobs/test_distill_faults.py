"""A fault costs one row, never the run. A teacher behind an OpenAI-compatible server on loopback that misbehaves the
ways real endpoints do, per row: throttling, errors for good, refusals, dropped connections, hangs. The run finishes,
every query is in `accepted/` or `rejects/` with the right reason, and the healthy rows are accepted. An endpoint that
fails every request stops its teacher early with one message, and nothing it failed is committed, so the same
command after the fix finishes the job."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml

from pipeline.storage import Store
from tests.chat_server import ChatServer, completion, error
from tests.conftest import REPO, descendants_named

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.5


class FaultyEndpoint(ChatServer):
    """Chat completions whose behaviour is chosen by the first word of the user's question:
    `ok` answers (reasoning in `reasoning_content`, as DeepSeek's API sends it); `throttle` answers 429 the first
    time, then 200; `broken` answers 500 for good; `long` answers 400 as for a prompt over the context length; `drop`
    closes the connection without a reply the first time, then answers; `hang` answers after the client's timeout;
    `code` answers after a second with a program that prints the answer. `deny_all` makes every request a 401, as
    with a bad key."""

    def __init__(self):
        self.deny_all = False
        self.seen: Counter[str] = Counter()
        super().__init__(self.respond)

    def respond(self, body):
        question = body["messages"][-1]["content"]
        kind, answer = question.split(":")[0], question.rsplit(" ", 1)[-1]
        self.seen[question] += 1
        first = self.seen[question] == 1
        if self.deny_all:
            return error(401, "Incorrect API key provided")
        if kind == "throttle" and first:
            return error(429, "Rate limit reached", {"Retry-After": "0"})
        if kind == "broken":
            return error(500, "internal error")
        if kind == "long":
            return error(400, "This model's maximum context length is 4096 tokens")
        if kind == "drop" and first:
            return None
        if kind == "hang":
            time.sleep(TIMEOUT_S + 1.5)
        content = f"The answer is \\boxed{{{answer}}}."
        if kind == "code":
            time.sleep(1)
            content = f"```python\nprint({answer})\n```"
        return completion(body, [{"reasoning_content": f"Counting up, I get {answer}.", "content": content}])


@pytest.fixture
def endpoint():
    server = FaultyEndpoint()
    yield server
    server.close()


def write_run(tmp_path, base_url, kinds, **engine):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": f"{kind}-{i}", "category": "math", "prompt": f"{kind}: what is {i} + 1? {i + 1}",
         "reference": {"answer": str(i + 1)}}
        if kind != "code" else
        {"id": f"{kind}-{i}", "category": "code", "prompt": f"{kind}: print {i} + 1, that is {i + 1}",
         "reference": {"tests": {"kind": "stdio", "cases": [{"input": "", "output": str(i + 1)}]}}}
        for i, kind in enumerate(kinds)
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "input": {"paths": [str(corpus)]},
        "output": str(tmp_path / "out"),
        "teachers": [{
            "name": "r1", "model": "deepseek-reasoner", "response_format": "think_then_answer",
            "engine": {"kind": "openai", "base_url": base_url, "max_retries": 1, "timeout_s": TIMEOUT_S,
                       "max_concurrency": 16, **engine},
            "max_attempts": 3,
            "faults": {"backoff_s": 0.05, "breaker_window": 20},
        }],
        "verifiers": {"replicas": 1, "code": "code" in kinds},
        "ray": {"dashboard": False},
        "shard_rows": 4,
        "flush_seconds": 1,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, {r["id"] for r in rows}


def start(config):
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.distill", "--config", str(config), "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def distill(config):
    return subprocess.run(
        [sys.executable, "-m", "jobs.distill", "--config", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )


def outcomes(tmp_path):
    store = Store(str(tmp_path / "out"))
    accepted = store.read_table("teachers/r1/accepted", columns=["id"])
    rejects = store.read_table("teachers/r1/rejects", columns=["id", "reason"])
    accepted = [] if accepted is None else accepted.column("id").to_pylist()
    rejected = {} if rejects is None else dict(zip(*(rejects.column(c).to_pylist() for c in ("id", "reason"))))
    return accepted, rejected, store


def test_each_fault_costs_its_row_only_and_is_rejected_with_its_reason(endpoint, tmp_path):
    kinds = ["ok"] * 4 + ["throttle"] * 2 + ["broken"] * 2 + ["long", "drop", "drop", "hang"]
    config, ids = write_run(tmp_path, endpoint.base_url, kinds)
    result = distill(config)
    assert result.returncode == 0, result.stderr[-4000:]

    accepted, rejected, store = outcomes(tmp_path)
    assert sorted(accepted + list(rejected)) == sorted(ids), "every query exactly once"
    assert {i.split("-")[0] for i in accepted} == {"ok", "throttle", "drop"}
    assert len(accepted) == 8
    assert rejected == {
        "broken-6": "endpoint_error", "broken-7": "endpoint_error", "long-8": "request_refused",
        "hang-11": "endpoint_timeout",
    }
    attempts = store.read_table("teachers/r1/attempts").to_pylist()
    broken = [a for a in attempts if a["id"] == "broken-6"]
    assert [a["failure"] for a in broken] == ["endpoint_error"] * 3, "retried within the row's budget, then rejected"
    assert [a["failure"] for a in attempts if a["id"] == "long-8"] == ["request_refused"], "a refusal is final"
    summary = json.loads(store.read_text("summary.json"))
    assert summary["teachers"][0]["rejected"] == {"endpoint_error": 2, "request_refused": 1, "endpoint_timeout": 1}
    assert "endpoint_error" in result.stdout, "the printed summary counts rows by reason"


def test_an_endpoint_that_fails_everything_stops_early_and_the_fixed_run_finishes(endpoint, tmp_path):
    endpoint.deny_all = True
    config, ids = write_run(tmp_path, endpoint.base_url, ["ok"] * 40)
    stopped = distill(config)
    assert stopped.returncode == 1, stopped.stderr[-4000:]
    message = [line for line in stopped.stderr.splitlines() if "teacher r1 stopped" in line]
    assert message and "endpoint_error" in message[0] and "401" in message[0], stopped.stderr[-3000:]
    accepted, rejected, _ = outcomes(tmp_path)
    assert not accepted and not rejected, "no row is rejected for the endpoint's fault"

    endpoint.deny_all = False
    fixed = distill(config)
    assert fixed.returncode == 0, fixed.stderr[-4000:]
    accepted, rejected, _ = outcomes(tmp_path)
    assert sorted(accepted) == sorted(ids) and not rejected


def test_a_typo_in_the_input_path_costs_nothing_and_the_fixed_path_runs_into_the_same_output(endpoint, tmp_path):
    config, ids = write_run(tmp_path, endpoint.base_url, ["ok"] * 3)
    settings = yaml.safe_load(config.read_text())
    corpus = settings["input"]["paths"][0]
    settings["input"]["paths"] = [corpus.replace("corpus", "corpsu")]
    config.write_text(yaml.safe_dump(settings))

    typo = distill(config)
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines() == [f"input {corpus.replace('corpus', 'corpsu')}: no such file or folder"]
    assert not (tmp_path / "out").exists(), "nothing claimed, nothing started"

    settings["input"]["paths"] = [corpus]
    settings["teachers"][0]["engine"]["replicas"] = 2  # scale settings may change too
    config.write_text(yaml.safe_dump(settings))
    fixed = distill(config)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    accepted, rejected, _ = outcomes(tmp_path)
    assert sorted(accepted) == sorted(ids) and not rejected


def test_an_input_with_no_valid_query_exits_2_and_leaves_the_output_open_for_the_fixed_input(endpoint, tmp_path):
    config, ids = write_run(tmp_path, endpoint.base_url, ["ok"] * 2)
    corpus = tmp_path / "corpus.jsonl"
    good = corpus.read_text()
    corpus.write_text('{"category": "math"}\nnot json\n')
    empty = distill(config)
    assert empty.returncode == 2 and "no valid queries" in empty.stderr and "Traceback" not in empty.stderr

    corpus.write_text(good)
    fixed = distill(config)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    accepted, _, store = outcomes(tmp_path)
    assert sorted(accepted) == sorted(ids)
    assert store.read_table("rejects") is None, "the bad rows of the first try are gone with it"


def test_a_dead_sandbox_restarts_its_verifier_and_every_code_answer_is_still_verified(endpoint, tmp_path):
    config, ids = write_run(tmp_path, endpoint.base_url, ["code"] * 8, max_concurrency=1, timeout_s=30)
    run = start(config)
    deadline = time.monotonic() + 600
    while not endpoint.seen:  # the verifiers are up (they start first) and the teacher is answering
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()[-3000:]
        time.sleep(0.2)
    sandboxes = descendants_named(run.pid, "_zygote_main")
    assert sandboxes, "the verifier's sandbox is running"
    for pid in sandboxes:
        os.kill(pid, signal.SIGKILL)
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-4000:]
    assert "zygote died" in output and "restarting the actor" in output, output[-4000:]
    accepted, rejected, _ = outcomes(tmp_path)
    assert sorted(accepted) == sorted(ids) and not rejected, "each right program passes, none lost to the restart"
