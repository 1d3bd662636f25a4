"""Every job as a user starts it: `--help` documents it and runs nothing, and bad input costs nothing. A missing,
unreadable or unrecognised input, or an output that cannot be written, is refused before Ray starts: one line on
stderr naming the path and the problem, exit code 2, no traceback, nothing written and earlier output intact."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.schema import SAMPLE_SCHEMA
from tests.conftest import REPO, shared_file

JOBS = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__")

# Runs a job's module as `python -m` does, then says whether Ray was imported.
HELP_PROBE = """
import runpy, sys
module = sys.argv[1]
sys.argv = [module, "--help"]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    print("EXIT", exit.code, "RAY IMPORTED", "ray" in sys.modules)
"""


def run_job(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.parametrize("job", JOBS)
def test_help_documents_the_options_and_starts_nothing(job, tmp_path):
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, f"jobs.{job}"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DISTILLERY_CACHE": str(cache)}, check=False,
    )
    assert result.stdout.startswith("usage:") and "--help" in result.stdout, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("EXIT 0 RAY IMPORTED False"), result.stdout[-500:] + result.stderr
    assert not cache.exists(), "nothing is prepared or written"


def assert_refused(result: subprocess.CompletedProcess, path, problem: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and problem in lines[0], lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A responses file, a file where a folder is expected, an empty folder, and accepted samples: 8 GSM8K reference
    solutions and an empty Parquet file."""
    root = tmp_path_factory.mktemp("cli")
    (root / "responses.jsonl").write_text('{"id": "a", "category": "math", "prompt": "1+1?", "response": "2"}\n')
    (root / "a_file").write_text("not a folder\n")
    (root / "empty").mkdir()
    run_job("jobs.reference_samples", "--input", str(shared_file("queries/gsm8k_train.jsonl")),
            "--output", str(root / "accepted"), "--limit", "8")
    pq.write_table(SAMPLE_SCHEMA.empty_table(), root / "no_samples.parquet")
    return root


@pytest.mark.parametrize(
    "output, path, problem",
    [
        pytest.param("{root}/a_file/scored.parquet", "{root}/a_file", "is a file, not a folder",
                     id="output-under-a-file"),
        pytest.param("{root}", "{root}", "is a folder", id="output-is-a-folder"),
        pytest.param("/proc/scored.jsonl", "/proc", "is not writable", id="output-not-writable"),
    ],
)
def test_verify_refuses_an_output_it_cannot_write_before_scoring(folders, output, path, problem):
    result = run_job("jobs.verify", "--input", str(folders / "responses.jsonl"), "--output",
                     output.format(root=folders), "--no-progress")
    assert_refused(result, path.format(root=folders), problem)


@pytest.mark.parametrize(
    "inputs, path, problem",
    [
        pytest.param(["{root}/missing.jsonl"], "{root}/missing.jsonl", "no such file or folder", id="missing-file"),
        pytest.param(["{root}/responses.jsonl", "{root}/empty"], "{root}/empty", "the folder holds no data files",
                     id="empty-folder"),
        pytest.param(["{root}/run/teachers/typo/attempts"], "{root}/run/teachers/typo/attempts",
                     "no such file or folder", id="mistyped-attempts-log"),
    ],
)
def test_verify_refuses_a_missing_input_and_keeps_the_earlier_output(folders, tmp_path, inputs, path, problem):
    output = tmp_path / "scored.jsonl"
    output.write_text("an earlier run's rows\n")
    result = run_job("jobs.verify", "--input", *[i.format(root=folders) for i in inputs], "--output", str(output))
    assert_refused(result, path.format(root=folders), problem)
    assert output.read_text() == "an earlier run's rows\n"


@pytest.mark.parametrize(
    "inputs, output, path, problem",
    [
        pytest.param(["{root}/responses.jsonl"], "s3://no-such-bucket/scored.parquet", "s3://no-such-bucket",
                     "The specified bucket does not exist", id="missing-bucket"),
        pytest.param(["s3://distillery-test/nothing-here/"], "{root}/scored.jsonl",
                     "s3://distillery-test/nothing-here/", "no such file or folder", id="missing-prefix"),
    ],
)
def test_verify_checks_object_storage_paths_too(folders, tmp_path, s3_server, inputs, output, path, problem):
    config = tmp_path / "verify.yaml"
    config.write_text(yaml.safe_dump({"storage_options": s3_server}))
    result = run_job("jobs.verify", "--input", *[i.format(root=folders) for i in inputs],
                     "--output", output.format(root=folders), "--config", str(config))
    assert_refused(result, path, problem)


def sources(*paths_and_weights):
    return {"sources": [{"name": name, "path": path, "weight": weight} for name, path, weight in paths_and_weights]}


@pytest.mark.parametrize(
    "changes, path, problem",
    [
        pytest.param({"data": sources(("a", "{root}/accepted", 1), ("b", "{root}/nope.parquet", 1))},
                     "{root}/nope.parquet", "no such file or folder", id="missing-source"),
        pytest.param({"data": sources(("a", "{root}/no_samples.parquet", 1))},
                     "{root}/no_samples.parquet", "holds no rows", id="no-samples"),
        pytest.param({"data": sources(("a", "{root}/accepted", 1), ("b", "{root}/accepted", 0.5)),
                      "global_batch_samples": 16},
                     "data.sources", "an epoch has 12 samples (a: 8 at weight 1, b: 8 at weight 0.5), fewer than one "
                     "step of global_batch_samples=16", id="fewer-than-one-step"),
        pytest.param({"output": "{root}/a_file/run"}, "{root}/a_file/run", "a_file is a file",
                     id="output-under-a-file"),
    ],
)
def test_train_refuses_what_it_cannot_train_on_or_write_before_ray_starts(folders, tmp_path, changes, path, problem):
    config = {
        "model": "smollm2-135m-instruct",
        "data": sources(("a", "{root}/accepted", 1)),
        "output": str(tmp_path / "run"),
        "global_batch_samples": 8,
        **changes,
    }
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(config).replace("{root}", str(folders)))
    result = run_job("jobs.train", "--config", str(config_file))
    assert_refused(result, path.format(root=folders), problem)
    assert not (tmp_path / "run").exists(), "no run is claimed"


@pytest.mark.parametrize(
    "source, output, path, problem",
    [
        pytest.param("{root}/responses.jsonl", "{tmp}/out", "{root}/responses.jsonl", "no GSM8K rows",
                     id="unrecognised-file"),
        pytest.param("{root}/accepted", "{tmp}/out", "{root}/accepted", "is a folder", id="a-folder"),
        pytest.param("{root}/missing.jsonl", "{tmp}/out", "{root}/missing.jsonl", "no such file or folder",
                     id="missing-file"),
        pytest.param("{gsm8k}", "{root}/a_file/out", "{root}/a_file/out", "a_file is a file", id="output-under-a-file"),
    ],
)
def test_reference_samples_refuses_what_it_cannot_read_or_write(folders, tmp_path, source, output, path, problem):
    names = {"root": folders, "tmp": tmp_path, "gsm8k": shared_file("queries/gsm8k_train.jsonl")}
    result = run_job("jobs.reference_samples", "--input", source.format(**names), "--output", output.format(**names))
    assert_refused(result, path.format(**names), problem)
    assert not (tmp_path / "out").exists()


def test_reference_samples_of_a_gsm8k_file(folders):
    table = pq.read_table(folders / "accepted")
    assert table.num_rows == 8 and table.schema.equals(SAMPLE_SCHEMA)


@pytest.mark.parametrize(
    "run, problem",
    [
        pytest.param("{tmp}/missing", "no such folder", id="missing-run"),
        pytest.param("{root}", "not a distill run folder (no config.json)", id="not-a-run"),
    ],
)
def test_analyze_refuses_a_folder_that_is_not_a_run(folders, tmp_path, run, problem):
    run = run.format(root=folders, tmp=tmp_path)
    result = run_job("jobs.analyze", "--runs", run, "--output", str(tmp_path / "report"))
    assert_refused(result, run, problem)
    assert not (tmp_path / "report").exists()
