"""The preprocessing config: shipped example loads, defaults stand alone, bad values name their field."""

import pytest
import yaml

from pipeline.config import ConfigError, PreprocessConfig, load_config
from pipeline.preprocess.embeddings import MEASURED_THRESHOLDS
from tests.conftest import REPO


def test_shipped_example_is_the_defaults_plus_benchmarks():
    config = load_config(PreprocessConfig, REPO / "configs" / "preprocess.yaml")
    assert config.decontamination.benchmarks[-1] == "humaneval"
    defaults = load_config(PreprocessConfig, None)
    assert config.model_copy(update={"decontamination": defaults.decontamination, "ray": defaults.ray}) == defaults
    assert config.decontamination.model_copy(update={"benchmarks": None}) == defaults.decontamination


@pytest.mark.parametrize(
    "raw, benchmarks",
    [
        pytest.param({}, None, id="unsaid"),
        pytest.param({"benchmarks": None}, None, id="null-is-unsaid"),
        pytest.param({"benchmarks": "none"}, [], id="none"),
        pytest.param({"benchmarks": []}, [], id="empty-list"),
        pytest.param({"benchmarks": ["a.jsonl", "humaneval"]}, ["a.jsonl", "humaneval"], id="files"),
    ],
)
def test_benchmarks_have_no_default_and_none_is_said_in_words(raw, benchmarks):
    assert PreprocessConfig.model_validate({"decontamination": raw}).decontamination.benchmarks == benchmarks


def test_command_line_benchmarks_replace_the_configs_and_are_validated_like_them():
    config = PreprocessConfig.model_validate({"decontamination": {"benchmarks": ["a.jsonl"], "ngram_size": 5}})
    assert config.with_benchmarks(["none"]).decontamination.benchmarks == []
    assert config.with_benchmarks(["b.jsonl"]).decontamination.model_dump() == {
        **config.decontamination.model_dump(), "benchmarks": ["b.jsonl"]
    }
    with pytest.raises(ConfigError, match="`none` .* cannot be listed with benchmark files"):
        config.with_benchmarks(["none", "b.jsonl"])


def test_embedding_threshold_defaults_to_the_measured_one_for_known_models():
    def embedding(**values):
        return PreprocessConfig.model_validate({"decontamination": {"embedding": values}}).decontamination.embedding

    assert embedding().threshold == MEASURED_THRESHOLDS["all-minilm-l6-v2"] == 0.85
    assert embedding(model="BAAI/bge-m3", num_gpus=1).threshold == 0.9
    assert embedding(model="/models/e5", threshold=0.93).threshold == 0.93
    with pytest.raises(ValueError, match="threshold: needed for model '/models/e5'"):
        embedding(model="/models/e5")


def test_embedding_can_be_switched_off():
    assert PreprocessConfig.model_validate({"decontamination": {"embedding": None}}).decontamination.embedding is None


@pytest.mark.parametrize(
    "raw, field",
    [
        pytest.param({"filters": {"max_noise_ratio": 2}}, "filters.max_noise_ratio", id="ratio"),
        pytest.param({"filters": {"min_chars": 50, "max_chars": 20}}, "filters", id="sizes"),
        pytest.param({"filters": {"url_exempt_categories": ["poetry"]}}, "filters.url_exempt_categories.0",
                     id="category"),
        pytest.param({"dedup": {"near": {"threshold": 0}}}, "dedup.near.threshold", id="near-threshold"),
        pytest.param({"dedup": {"partition": 4}}, "dedup.partition", id="typo"),
        pytest.param({"decontamination": {"embedding": {"replicas": 0}}}, "decontamination.embedding.replicas",
                     id="replicas"),
        pytest.param({"decontamination": {"embedding": {"replicas": 3, "max_replicas": 2}}},
                     "decontamination.embedding", id="max-replicas"),
    ],
)
def test_bad_values_name_their_field(tmp_path, raw, field):
    path = tmp_path / "preprocess.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(PreprocessConfig, path)
    assert f"  {field}" in str(err.value)


def test_hash_ignores_where_the_run_happens():
    base = load_config(PreprocessConfig, None)
    elsewhere = PreprocessConfig.model_validate({"ray": {"address": "auto"}, "storage_options": {"anon": True}})
    stricter = PreprocessConfig.model_validate({"filters": {"min_chars": 20}})
    assert base.config_hash() == elsewhere.config_hash() != stricter.config_hash()
