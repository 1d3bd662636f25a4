"""Typed configuration for distillation runs, loaded from YAML.

Every model is frozen and forbids unknown keys, so a typo fails before any work starts, with the field's path in
the message. The hash of the resolved config is stamped on every output row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator,
)

from pipeline.response_format import ResponseFormat
from pipeline.schema import Category


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplingConfig(_Strict):
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    n: int = Field(1, ge=1, description="candidates generated per attempt")
    seed: int | None = None


class VLLMEngineConfig(_Strict):
    """A pool of local vLLM engines, one per Ray actor."""

    kind: Literal["vllm"] = "vllm"
    replicas: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs per replica (all its tensor-parallel ranks); 0 is CPU")
    num_cpus: float = Field(1.0, ge=0.0, description="CPUs per replica")
    max_model_len: int = Field(4096, ge=128)
    dtype: str = "bfloat16"
    enforce_eager: bool = False
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="GPU memory fraction vLLM may use")
    cpu_kv_cache_gib: int = Field(1, ge=1, description="KV cache in host RAM, for CPU-only engines")
    batch_size: int = Field(
        1, ge=1, description="queries per Ray Data batch; a batch is committed when its slowest query is done"
    )
    batches_in_flight: int = Field(
        64, ge=1, description="batches each replica works on at once; keep it above the engine's running sequences"
    )
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed through to vLLM")

    @model_validator(mode="after")
    def _gpus_cover_tensor_parallelism(self) -> "VLLMEngineConfig":
        if self.num_gpus and self.num_gpus < self.tensor_parallel_size:
            raise ValueError(f"num_gpus ({self.num_gpus:g}) must cover tensor_parallel_size ({self.tensor_parallel_size})")
        return self


class OpenAIEngineConfig(_Strict):
    """An OpenAI-compatible HTTP endpoint: a vLLM server, a Ray Serve deployment or a hosted API."""

    kind: Literal["openai"]
    base_url: str = Field(description="e.g. http://head:8000/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    replicas: int = Field(1, ge=1, description="actors sending requests")
    num_cpus: float = Field(0.25, ge=0.0)
    max_concurrency: int = Field(16, ge=1, description="requests in flight per actor")
    requests_per_s: float | None = Field(None, gt=0.0, description="rate limit per actor")
    max_retries: int = Field(5, ge=0, description="retries with exponential backoff on 429, 5xx and timeouts")
    timeout_s: float = Field(600.0, gt=0.0)
    batch_size: int = Field(1, ge=1)
    batches_in_flight: int = Field(64, ge=1)


def _engine_kind(value: Any) -> str:
    """`kind` may be left out: a local vLLM pool is the default engine."""
    return value.get("kind", "vllm") if isinstance(value, dict) else value.kind


EngineConfig = Annotated[
    Union[Annotated[VLLMEngineConfig, Tag("vllm")], Annotated[OpenAIEngineConfig, Tag("openai")]],
    Discriminator(_engine_kind),
]


class TeacherConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: str = Field(description="local path, Hugging Face id, s3:// URI, or `smollm2-135m-instruct`")
    engine: EngineConfig = Field(default_factory=VLLMEngineConfig)
    system_prompt: str | None = None
    response_format: ResponseFormat = "think_answer"
    sampling: dict[str, SamplingConfig] = Field(
        default_factory=lambda: {"default": SamplingConfig()},
        description="per category, with `default` for the rest",
    )
    max_attempts: int = Field(4, ge=1)
    accept_threshold: float = Field(0.9, ge=0.0, le=1.0)

    @field_validator("sampling")
    @classmethod
    def _known_categories(cls, value: dict[str, SamplingConfig]) -> dict[str, SamplingConfig]:
        allowed = {"default"} | {c.value for c in Category}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown categories {unknown}; use {sorted(allowed)}")
        if "default" not in value:
            raise ValueError("needs a `default` entry")
        return value

    def sampling_for(self, category: Category) -> SamplingConfig:
        return self.sampling.get(category.value, self.sampling["default"])


class InputConfig(_Strict):
    paths: list[str] = Field(min_length=1, description="JSONL or Parquet files, local or object storage")
    limit: int | None = Field(None, ge=1, description="first N valid queries only")
    max_row_bytes: int = Field(1_000_000, ge=1024)


class VerifierConfig(_Strict):
    replicas: int = Field(2, ge=1)
    num_cpus: float = Field(0.5, ge=0.0)
    math_timeout_s: float = Field(10.0, gt=0.0, description="hard wall-clock limit per math verification")
    code_max_tests: int = Field(10, ge=1, description="tests run per code answer (the paper uses up to 10)")
    code_wall_s: float = Field(5.0, gt=0.0, description="wall-clock limit per test run")
    code_cpu_s: int = Field(5, ge=1, description="CPU-time limit per test run")
    code_memory_mb: int = Field(512, ge=64, description="address-space limit per test run")


class RayConfig(_Strict):
    address: str | None = Field(None, description="None starts a local cluster, or joins the `ray job` cluster")
    num_cpus: int | None = Field(None, ge=1, description="logical CPUs of a local cluster")
    dashboard: bool = Field(True, description="start the Ray dashboard with a local cluster")


class DistillConfig(_Strict):
    input: InputConfig
    output: str = Field(description="folder for the run's datasets: a local path or s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url")
    teachers: list[TeacherConfig] = Field(min_length=1)
    verifiers: VerifierConfig = Field(default_factory=VerifierConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    shard_rows: int = Field(256, ge=1, description="rows per output Parquet file")
    flush_seconds: float = Field(30.0, gt=0.0, description="longest time a finished row waits to be written")

    @model_validator(mode="after")
    def _unique_teachers(self) -> "DistillConfig":
        names = [t.name for t in self.teachers]
        if len(names) != len(set(names)):
            raise ValueError(f"teacher names must be unique, got {names}")
        return self

    def config_hash(self) -> str:
        """Hash of what determines the outputs; where the run happens (ray, storage) is left out."""
        payload = self.model_dump(mode="json", exclude={"ray", "storage_options", "output"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def load_config(path: str | Path) -> DistillConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "config") -> DistillConfig:
    try:
        return DistillConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid config\n{_field_errors(err)}") from None


def _field_errors(err: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors())


class VerifyJobConfig(_Strict):
    """`jobs.verify`: score responses that already exist."""

    response_format: ResponseFormat = "think_answer"
    verifiers: VerifierConfig = Field(default_factory=VerifierConfig)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    ray: RayConfig = Field(default_factory=RayConfig)


def load_verify_config(path: str | Path | None) -> VerifyJobConfig:
    if path is None:
        return VerifyJobConfig()
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return VerifyJobConfig.model_validate(raw or {})
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from err
    except ValidationError as err:
        raise ConfigError(f"{path}: invalid config\n{_field_errors(err)}") from None
