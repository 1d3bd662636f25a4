"""Configs fail before any work starts, and the message names the field."""

import pytest
import yaml

from pipeline.config import ConfigError, DistillConfig, PreprocessConfig, TrainConfig, load_config, parse_config
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
    "paper_distill.yaml": DistillConfig,
    "preprocess.yaml": PreprocessConfig,
    "train_cpu.yaml": TrainConfig,
    "train_paper.yaml": TrainConfig,
}


def test_shipped_configs_load():
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted(SHIPPED)
    for name, model in SHIPPED.items():
        load_config(model, REPO / "configs" / name)


@pytest.mark.parametrize(
    "path, value, message",
    [
        pytest.param("teachers.0.max_attempts", 0, "teachers.0.max_attempts", id="attempts"),
        pytest.param("teachers.0.accept_threshold", 1.5, "teachers.0.accept_threshold", id="threshold"),
        pytest.param("teachers.0.sampling", {"default": {"temperature": -1}}, "teachers.0.sampling.default.temperature", id="temperature"),
        pytest.param("teachers.0.sampling", {"poetry": {}}, "unknown categories", id="sampling-category"),
        pytest.param("teachers.0.name", "has space", "teachers.0.name", id="teacher-name"),
        pytest.param("teachers.0.response_format", "xml", "teachers.0.response_format", id="format"),
        pytest.param("teachers.0.engine", {"replica": 2}, "teachers.0.engine.vllm.replica", id="typo"),
        pytest.param("input.paths", [], "input.paths", id="no-inputs"),
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
