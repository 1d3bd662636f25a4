"""Configs fail before any work starts, and the message names the field."""

import pytest
import yaml

from pipeline.config import (
    ConfigError, DistillConfig, EvaluateConfig, ExperimentConfig, FilterConfig, PreprocessConfig, ServeConfig,
    TrainConfig, load_config, parse_config,
)
from pipeline.loaders import parse_json_line
from pipeline.schema import Query
from tests.conftest import REPO

MINIMAL = {"input": {"paths": ["q.jsonl"]}, "output": "out", "teachers": [{"name": "t", "model": "m"}]}


def with_change(path: str, value):
    config = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return config


# Every shipped config, with the job it configures; a new file must be added here to be tested.
SHIPPED = {
    "demo.yaml": DistillConfig,
    "demo_filter.yaml": FilterConfig,
    "evaluate.yaml": EvaluateConfig,
    "evaluate_demo.yaml": EvaluateConfig,
    "experiment_demo.yaml": ExperimentConfig,
    "experiment_paper.yaml": ExperimentConfig,
    "filter.yaml": FilterConfig,
    "paper_distill.yaml": DistillConfig,
    "preprocess.yaml": PreprocessConfig,
    "serve.yaml": ServeConfig,
    "train_cpu.yaml": TrainConfig,
    "train_paper.yaml": TrainConfig,
}
# Ray Serve's own `serve deploy` file, checked against configs/serve.yaml in tests/jobs/test_serve.py.
NOT_OURS = {"serve_deploy.yaml"}


def test_shipped_configs_load():
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted([*SHIPPED, *NOT_OURS])
    for name, model in SHIPPED.items():
        load_config(model, REPO / "configs" / name)


def test_demo_reads_its_own_measured_query_set():
    """The demo needs nothing outside the repository, and its queries span the loop's three outcomes: each carries
    the pass rate measured for the embedded model (see configs/demo_queries.md)."""
    demo = load_config(DistillConfig, REPO / "configs" / "demo.yaml")
    assert demo.input.paths == ["configs/demo_queries.jsonl"]
    rows = (REPO / "configs" / "demo_queries.jsonl").read_bytes().splitlines()
    queries = [parse_json_line(row, "demo_queries") for row in rows]
    assert all(isinstance(q, Query) for q in queries)
    assert {q.metadata["difficulty"] for q in queries} == {"often", "sometimes", "never"}
    assert len({q.category for q in queries}) >= 3
    assert all(0.0 <= q.metadata["pass_rate"] <= 1.0 and q.metadata["source_file"] for q in queries)


@pytest.mark.parametrize(
    "path, value, message",
    [
        pytest.param("teachers.0.max_attempts", 0, "teachers.0.max_attempts", id="attempts"),
        pytest.param("teachers.0.accept_threshold", 1.5, "teachers.0.accept_threshold", id="threshold"),
        pytest.param("teachers.0.sampling", {"default": {"temperature": -1}}, "teachers.0.sampling.default.temperature",
                     id="temperature"),
        pytest.param("teachers.0.sampling", {"poetry": {}}, "unknown categories", id="sampling-category"),
        pytest.param("teachers.0.name", "has space", "teachers.0.name", id="teacher-name"),
        pytest.param("teachers.0.response_format", "xml", "teachers.0.response_format", id="format"),
        pytest.param("teachers.0.response_format", "answer_only", "samples need reasoning", id="no-reasoning"),
        pytest.param("teachers.0.engine", {"replica": 2}, "teachers.0.engine.vllm.replica", id="typo"),
        pytest.param("teachers.0.engine", {"replicas": 4, "max_replicas": 2},
                     "teachers.0.engine.vllm: Value error, max_replicas", id="pool-range"),
        pytest.param("input.paths", [], "input.paths", id="no-inputs"),
        pytest.param("verifiers", {"idle_s": 0}, "verifiers.idle_s", id="idle-period"),
    ],
)
def test_bad_values_name_their_field(path, value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(DistillConfig, with_change(path, value))


def test_duplicate_teacher_names_are_refused():
    config = with_change("teachers", [{"name": "t", "model": "a"}, {"name": "t", "model": "b"}])
    with pytest.raises(ConfigError, match="unique"):
        parse_config(DistillConfig, config)


def test_hash_ignores_where_the_run_happens_but_not_what_it_does():
    base = parse_config(DistillConfig, MINIMAL)
    assert base.config_hash() == parse_config(DistillConfig, with_change("output", "s3://elsewhere")).config_hash()
    assert base.config_hash() != parse_config(DistillConfig, with_change("teachers.0.max_attempts", 7)).config_hash()


ENDPOINT = {"kind": "openai", "base_url": "http://a:1/v1"}


@pytest.mark.parametrize(
    "path, before, after",
    [
        ("input.paths", ["q.jsonl"], ["s3://bucket/moved.jsonl"]),
        ("teachers.0.engine", {}, {"replicas": 8, "max_replicas": 16, "num_gpus": 2, "tensor_parallel_size": 2,
                                   "batches_in_flight": 8}),
        ("teachers.0.engine", ENDPOINT, {**ENDPOINT, "base_url": "http://moved:8000/v1", "max_concurrency": 64,
                                         "timeout_s": 30, "max_retries": 9, "api_key_env": "KEY"}),
        ("teachers.0.faults", {}, {"backoff_s": 9, "breaker_failure_rate": None}),
        ("verifiers", {}, {"replicas": 16, "num_cpus": 2, "idle_s": 5}),
        ("shard_rows", 256, 7),
        ("flush_seconds", 30, 1),
    ],
)
def test_scale_settings_can_change_between_a_kill_and_a_resume(path, before, after):
    first = parse_config(DistillConfig, with_change(path, before)).config_hash()
    assert first == parse_config(DistillConfig, with_change(path, after)).config_hash()


@pytest.mark.parametrize(
    "path, value",
    [
        ("teachers.0.model", "other"),
        ("teachers.0.engine", {"max_model_len": 8192}),
        ("teachers.0.sampling", {"default": {"temperature": 0.1}}),
        ("verifiers", {"code_max_tests": 3}),
    ],
)
def test_what_changes_the_data_changes_the_hash(path, value):
    base = parse_config(DistillConfig, MINIMAL)
    assert base.config_hash() != parse_config(DistillConfig, with_change(path, value)).config_hash()


def test_unreadable_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(DistillConfig, bad)


def test_engine_kind_defaults_to_a_local_vllm_pool_and_selects_an_endpoint():
    assert parse_config(DistillConfig, MINIMAL).teachers[0].engine.kind == "vllm"
    endpoint = {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1", "requests_per_s": 5}
    assert parse_config(DistillConfig, with_change("teachers.0.engine", endpoint)).teachers[0].engine.kind == "openai"
    with pytest.raises(ConfigError, match="teachers.0.engine.openai.base_url"):
        parse_config(DistillConfig, with_change("teachers.0.engine", {"kind": "openai"}))
