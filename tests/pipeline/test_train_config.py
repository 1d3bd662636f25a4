"""Training configs: the shipped ones are valid, and a bad value fails before anything starts, naming its field."""

import pytest
import yaml

from pipeline.config import ConfigError, TrainConfig, load_config
from tests.conftest import REPO

MINIMAL = {"model": "m", "data": {"sources": [{"name": "a", "path": "p"}]}, "output": "o"}


def test_the_paper_setting():
    config = load_config(TrainConfig, REPO / "configs" / "train_paper.yaml")
    assert (config.model, config.optimizer.lr, config.data.max_seq_len) == ("Qwen/Qwen2.5-32B", 8e-5, 32768)
    assert (config.global_batch_samples, config.epochs, config.precision) == (64, 2, "bf16")
    assert (config.strategy.kind, config.strategy.zero_stage) == ("deepspeed", 3)
    assert config.attn_implementation == "flash_attention_2" and config.scaling.use_gpu


def test_the_cpu_setting():
    config = load_config(TrainConfig, REPO / "configs" / "train_cpu.yaml")
    assert config.model == "smollm2-135m-instruct" and config.scaling.num_workers == 2
    assert not config.scaling.use_gpu and config.attn_implementation == "sdpa"


def test_defaults_are_the_paper_hyperparameters():
    config = TrainConfig.model_validate(MINIMAL)
    assert (config.optimizer.lr, config.data.max_seq_len, config.global_batch_samples, config.epochs) == (
        8e-5, 32768, 64, 2)
    assert (config.strategy.kind, config.strategy.zero_stage, config.precision) == ("deepspeed", 3, "bf16")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"attn_implementation": "flash_attention_2"}, "flash_attention_2 needs scaling.use_gpu"),
        ({"strategy": {"zero_stage": 2, "offload_params": True}}, "offload_params needs zero_stage 3"),
        ({"strategy": {"kind": "fsdp2", "zero_stage": 3}}, "strategy.fsdp2.zero_stage"),
        ({"data": {"sources": [{"name": "a", "path": "p"}, {"name": "a", "path": "q"}]}}, "data.sources"),
        ({"data": {"sources": [{"name": "a", "path": "p", "weight": 0}]}}, "data.sources.0.weight"),
        ({"optimizer": {"learning_rate": 1e-5}}, "optimizer.learning_rate"),
    ],
    ids=["flash-attn-on-cpu", "param-offload-without-zero3", "wrong-strategy-field", "duplicate-source",
         "zero-weight", "typo"],
)
def test_bad_values_name_their_field(tmp_path, change, field):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, **change}))
    with pytest.raises(ConfigError, match=field):
        load_config(TrainConfig, path)


def test_the_hash_ignores_where_the_run_writes_and_how_it_recovers():
    base = TrainConfig.model_validate(MINIMAL)
    moved = TrainConfig.model_validate({**MINIMAL, "output": "s3://b/o", "max_failures": 3, "keep_checkpoints": 5})
    assert base.config_hash() == moved.config_hash()
    assert base.config_hash() != TrainConfig.model_validate({**MINIMAL, "epochs": 3}).config_hash()
