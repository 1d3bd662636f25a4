"""Killing things mid-run: a teacher actor that dies is restarted by Ray and its work retried; so is one whose vLLM
engine process dies under it; a driver that dies is resumed by running the same command again, losing and
duplicating nothing. Real engine, local Ray, local files. (A verifier whose sandbox dies:
tests/jobs/test_distill_faults.py.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.storage import Store
from tests.conftest import REPO, descendants_named

pytestmark = pytest.mark.slow

PROBLEMS = [
    {
        "id": f"books-{i}",
        "category": "math",
        "prompt": f"Ann has {a} books and gets {b} more. How many books does she have?",
        "reference": {"answer": str(a + b)},
    }
    for i, (a, b) in enumerate([(2, 3), (4, 1), (5, 5), (6, 2), (3, 3), (7, 2)])
]
ALL_IDS = sorted(p["id"] for p in PROBLEMS)
def write_run(root: Path) -> Path:
    corpus = root / "corpus.jsonl"
    rows = PROBLEMS
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "input": {"paths": [str(corpus)]},
        "output": str(root / "out"),
        "teachers": [
            {
                "name": "smollm2",
                "model": "smollm2-135m-instruct",
                "response_format": "plain",
                "engine": {"max_model_len": 1024, "enforce_eager": True, "dtype": "float32", "batch_size": 1,
                           "batches_in_flight": 2},
                "sampling": {"default": {"temperature": 0.8, "max_tokens": 128, "n": 2, "seed": 3}},
                "max_attempts": 2,
            }
        ],
        "verifiers": {"replicas": 1},
        "ray": {"dashboard": False},
        "shard_rows": 1,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path) -> subprocess.Popen:
    # A session of its own, so the whole tree (driver, local Ray cluster, engine) can be killed at once.
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.distill", "--config", str(config), "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def finished_ids(store: Store) -> list[str]:
    ids = []
    for folder in ("teachers/smollm2/accepted", "teachers/smollm2/rejects"):
        table = store.read_table(folder, columns=["id"])
        ids += [] if table is None else table.column("id").to_pylist()
    return ids


def wait_for(predicate, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert process.poll() is None, process.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_killed_driver_resumes_without_loss_or_duplicates(tmp_path):
    config = write_run(tmp_path)
    store = Store(str(tmp_path / "out"))
    first = start(config)
    wait_for(lambda: len(finished_ids(store)) >= 2, 600, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    committed_before = set(finished_ids(store))
    shards_before = set(store.shards("teachers/smollm2/attempts"))
    assert 2 <= len(committed_before) < len(ALL_IDS), "killed mid-run"

    second = start(config)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-4000:]

    ids = finished_ids(store)
    assert sorted(ids) == ALL_IDS, "each query exactly once"
    new_shards = set(store.shards("teachers/smollm2/attempts")) - shards_before
    regenerated = set()
    for shard in new_shards:
        regenerated |= set(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    assert regenerated and not (regenerated & committed_before), "finished work is not generated again"


def test_a_killed_teacher_actor_and_then_a_dead_engine_process_are_each_restarted_and_the_run_completes(tmp_path):
    """Both in one run (each restart costs an engine start): Ray restarts the killed actor and retries its batches;
    a dead vLLM engine process makes its actor exit, and Ray restarts that too."""
    config = write_run(tmp_path)
    store = Store(str(tmp_path / "out"))
    run = start(config)
    for committed, victim in [(1, "MapBatches(TeacherStage)"), (3, "EngineCore")]:
        wait_for(lambda n=committed: len(finished_ids(store)) >= n, 600, run)
        victims = descendants_named(run.pid, victim)
        assert victims, f"{victim} is running"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output[-4000:]
    assert sorted(finished_ids(store)) == ALL_IDS, "every query exactly once"
    assert "the vLLM engine died" in output, output[-4000:]
