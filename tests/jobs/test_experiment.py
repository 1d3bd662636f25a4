"""`python -m jobs.experiment` as a user runs it, tiny everything: 8 queries, SmolLM2 as the one teacher, a tiny
student, 2 GSM8K and 1 MATH500 problems. One experiment serves every assertion: its first run is killed (the whole
process group) while the student trains; the same command then resumes at training, without distilling again, and
writes the report; a third run with only the evaluation's metrics changed re-runs only evaluation and the report.
Real jobs, real local Ray, real vLLM. Bad configs are refused before anything starts."""

import json
import os
import signal
import subprocess
import sys
import time
from itertools import takewhile

import psutil
import pytest
import yaml

from pipeline.storage import Store
from tests.conftest import REPO, shared_file
from tests.tiny_student import save_tiny_student

TEACHER = "smollm2"
PROBLEMS = [
    ("Ann has 2 books and gets 3 more. How many books does she have?", 5),
    ("A farmer has 4 cows and buys 1 more cow. How many cows are on the farm now?", 5),
    ("Tom baked 6 cookies and ate 2 of them. How many cookies are left?", 4),
    ("There are 3 red cars and 3 blue cars in a lot. How many cars are there in total?", 6),
    ("Mia reads 7 pages on Monday and 2 pages on Tuesday. How many pages did she read?", 9),
    ("A box holds 5 pens. Sam adds 5 pens to it. How many pens are in the box?", 10),
    ("Leo had 8 marbles and gave away 3. How many marbles does Leo keep?", 5),
    ("A shelf has 1 plant and Zoe puts 6 more plants on it. How many plants are on the shelf?", 7),
]
BENCHMARKS = {"gsm8k": ("gsm8k_test.jsonl", 2), "math500": ("math500.jsonl", 1)}


def write_config(root, ks=(1, 2)):
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"q-{i}", "category": "math", "prompt": prompt,
                                          "reference": {"answer": str(answer)}}) + "\n"
                              for i, (prompt, answer) in enumerate(PROBLEMS)))
    student = root / "student"
    if not student.exists():
        save_tiny_student(student)
    engine = {"max_model_len": 512, "enforce_eager": True, "dtype": "float32", "batches_in_flight": 8}
    config = {
        "output": str(root / "out"),
        "queries": [{"path": str(corpus)}],
        "preprocess": {"dedup": {"partitions": 1}, "decontamination": {"embedding": None}},
        "distill": {
            "teachers": [{"name": TEACHER, "model": "smollm2-135m-instruct", "response_format": "plain",
                          "system_prompt": "Solve the problem step by step. End with a line that states the answer.",
                          "engine": {**engine, "batch_size": 1},
                          "sampling": {"default": {"temperature": 0.7, "max_tokens": 160, "n": 2, "seed": 1}},
                          "max_attempts": 4}],
            "verifiers": {"replicas": 1, "code": False},
            "shard_rows": 2, "flush_seconds": 2,
        },
        "filter": {"perplexity": None, "max_tokens": 512},
        "train": {
            "model": str(student), "data": {"max_seq_len": 512}, "epochs": 6, "global_batch_samples": 1,
            "precision": "fp32", "attn_implementation": "eager", "optimizer": {"lr": 1e-3},
            "strategy": {"kind": "deepspeed", "zero_stage": 3}, "scaling": {"num_workers": 1},
            "checkpoint_every_steps": 2,
        },
        "evaluate": {
            "student": {"response_format": "answer_only", "system_prompt": "", "engine": engine,
                        "sampling": {"max_tokens": 24}},
            "benchmarks": [{"name": name, "path": str(shared_file(f"benchmarks/{file}")), "limit": limit,
                            "samples": 2} for name, (file, limit) in BENCHMARKS.items()],
            "ks": list(ks),
            "verifiers": {"replicas": 1, "code": False},
            "shard_rows": 2, "flush_seconds": 1,
        },
        "ray": {"dashboard": False},
    }
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def experiment(config, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.experiment", "--config", str(config), "--no-progress", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=3000)


def plan(output: str) -> dict[str, str]:
    """The plan a run printed: phase -> reuse | resume | run."""
    lines = output.split("[experiment] plan:\n", 1)[1].splitlines()
    rows = [line.split() for line in takewhile(lambda line: line.startswith("  "), lines)]
    return {row[0]: row[1] for row in rows}


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the run's process group, then whatever it started that left the group (Ray's own daemons)."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGKILL)
    except (psutil.NoSuchProcess, ProcessLookupError):  # it ended on its own: the assertion that saw it says why
        tree = []
    process.wait()
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def snapshot(store: Store, folder: str) -> dict[str, int]:
    """Every file below `folder` with its modification time."""
    return {path: store.fs.info(path)["mtime"] for path in store.fs.find(store.path(folder))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    config = write_config(root)
    store = Store(str(root / "out"))
    log = root / "first.log"  # a file, not a pipe nobody reads while the run fills it
    with log.open("w") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "jobs.experiment", "--config", str(config), "--no-progress"], cwd=REPO,
            stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    # A checkpoint counts once Ray Train has registered it: a resumed run starts from the snapshot's latest.
    registered = root / "out" / "train" / TEACHER / "checkpoints" / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 2400
    try:
        while not (registered.exists() and "step_00000002" in registered.read_text()):
            assert first.poll() is None, log.read_text()[-6000:]
            assert time.monotonic() < deadline, "no training checkpoint"
            time.sleep(0.2)
    finally:
        kill_tree(first)
    killed = {"distill": snapshot(store, "distill"), "records": snapshot(store, "experiment/phases")}
    second = experiment(config)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    finished = {"evaluate": snapshot(store, "evaluate/models"), "records": snapshot(store, "experiment/phases")}
    write_config(root, ks=(1,))
    third = experiment(config)
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-4000:]
    return {"store": store, "killed": killed, "finished": finished, "second": second.stdout, "third": third.stdout}


@pytest.mark.slow
def test_the_report_has_a_row_per_student_and_a_column_per_benchmark(run):
    store = run["store"]
    results = json.loads(store.read_text("report/results.json"))
    (table1,) = next(s for s in results["sections"] if s["id"] == "table1")["tables"]
    assert table1["columns"] == ["model", "trained on", *sorted(BENCHMARKS, key=results["benchmarks"].index)]
    assert [row[:2] for row in table1["rows"]] == [[TEACHER, TEACHER], ["base", "— (base model)"]]
    for model in (TEACHER, "base"):
        for benchmark, (_, limit) in BENCHMARKS.items():
            scores = results["models"][model]["benchmarks"][benchmark]
            assert scores["problems"] == limit and scores["samples"] == 2 * limit
            assert 0 <= scores["pass@1"] <= 100 and scores["mean_response_tokens"] > 0
    dataset = results["datasets"][TEACHER]
    assert dataset["queries"] == len(PROBLEMS) and dataset["filter_kept"] == results["models"][TEACHER]["training"][
        "samples"][TEACHER]
    page = store.read_text("report/report.html")
    for title in ("Students compared", "Response tokens per benchmark", "Datasets compared", "Datasets: perplexity"):
        assert title in page


@pytest.mark.slow
def test_a_run_killed_in_training_resumes_at_training_without_distilling_again(run):
    assert plan(run["second"]) == {"preprocess": "reuse", "distill": "reuse", "filter": "reuse",
                                   f"train/{TEACHER}": "resume", "evaluate": "run", "report": "run"}
    store = run["store"]
    assert snapshot(store, "distill") == run["killed"]["distill"], "nothing of the distill run was written again"
    distill_record = store.path("experiment/phases/distill.json")
    assert run["killed"]["records"][distill_record] == snapshot(store, "experiment/phases")[distill_record]
    summary = json.loads(store.read_text(f"train/{TEACHER}/summary.json"))
    assert summary["plan"]["resumed_at"] >= 2, "training continued from the killed run's checkpoint"
    record = json.loads(store.read_text(f"experiment/phases/train/{TEACHER}.json"))
    assert record["status"] == "finished" and record["summary"]["plan"]["resumed_at"] >= 2


@pytest.mark.slow
def test_changing_only_evaluation_settings_reruns_only_evaluation_and_the_report(run):
    assert plan(run["third"]) == {"preprocess": "reuse", "distill": "reuse", "filter": "reuse",
                                  f"train/{TEACHER}": "reuse", "evaluate": "run", "report": "run"}
    assert "settings changed: ks" in run["third"]
    store = run["store"]
    assert snapshot(store, "evaluate/models") == run["finished"]["evaluate"], "the samples are kept, not redone"
    records = snapshot(store, "experiment/phases")
    changed = sorted(p for p, t in records.items() if p.endswith(".json") and run["finished"]["records"].get(p) != t)
    assert changed == [store.path(f"experiment/phases/{name}.json") for name in ("evaluate", "report")]
    results = json.loads(store.read_text("evaluate/results.json"))
    assert "pass@2" not in results["models"][TEACHER]["gsm8k"], "the new metrics"


def test_a_bad_field_is_named_before_anything_starts(tmp_path):
    config = write_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["distill"]["teachers"][0]["max_attempts"] = 0
    config.write_text(yaml.safe_dump(raw))
    result = experiment(config)
    assert result.returncode == 2 and "distill.teachers.0.max_attempts: Input should be greater than or equal to 1" in \
        result.stderr, result.stderr
    assert not (tmp_path / "out").exists(), "nothing written"


def test_a_missing_query_file_is_refused_before_anything_starts(tmp_path):
    config = write_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["queries"] = [{"path": str(tmp_path / "missing.jsonl")}]
    config.write_text(yaml.safe_dump(raw))
    result = experiment(config)
    assert result.returncode == 2 and result.stderr.strip() == f"input {tmp_path / 'missing.jsonl'}: no such file or " \
        "folder", result.stderr


def test_plan_prints_what_a_run_would_do_and_does_nothing(tmp_path):
    result = experiment(write_config(tmp_path), "--plan")
    assert result.returncode == 0, result.stderr
    assert plan(result.stdout) == {"preprocess": "run", "distill": "run", "filter": "run", f"train/{TEACHER}": "run",
                                   "evaluate": "run", "report": "run"}
    assert not (tmp_path / "out").exists()
