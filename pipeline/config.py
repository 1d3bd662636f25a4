"""Typed configuration for distillation runs, loaded from YAML.

Every model is frozen and forbids unknown keys, so a typo fails before any work starts, with the field's path in
the message. The hash of the resolved config is stamped on every output row.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator,
)

from pipeline.models import EMBEDDED_MODEL
from pipeline.response_format import ReasoningSource, ResponseFormat
from pipeline.schema import Category

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Marks a setting that changes how fast or where a run goes, never what it produces: left out of config hashes, so it
# can change between a kill and a resume.
SCALE = {"scale": True}
MAX_REPLICAS = (
    "grow the pool from `replicas` up to this many while work waits, and shrink it when idle: on an autoscaling "
    "cluster the new replicas' resource requests bring up the nodes; None keeps a fixed pool of `replicas`"
)


def _replica_range(engine: Any) -> Any:
    if engine.max_replicas is not None and engine.max_replicas < engine.replicas:
        raise ValueError(f"max_replicas ({engine.max_replicas}) is below replicas ({engine.replicas})")
    return engine


def data_settings(model: BaseModel) -> Any:
    """`model` as JSON, without its scale settings (`SCALE`) at any depth: what a config hash covers."""
    def strip(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return {
                name: strip(getattr(value, name))
                for name, field in type(value).model_fields.items()
                if not (field.json_schema_extra or {}).get("scale")
            }
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    return json.loads(json.dumps(strip(model), default=lambda v: v.value if hasattr(v, "value") else str(v)))


class SamplingConfig(_Strict):
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    n: int = Field(1, ge=1, description="candidates generated per attempt")
    seed: int | None = None


class VLLMEngineConfig(_Strict):
    """A pool of local vLLM engines, one per Ray actor."""

    kind: Literal["vllm"] = "vllm"
    replicas: int = Field(1, ge=1, json_schema_extra=SCALE)
    max_replicas: int | None = Field(None, ge=1, description=MAX_REPLICAS, json_schema_extra=SCALE)
    tensor_parallel_size: int = Field(1, ge=1, json_schema_extra=SCALE)
    num_gpus: float = Field(
        0.0, ge=0.0, description="GPUs per replica (all its tensor-parallel ranks); 0 is CPU", json_schema_extra=SCALE
    )
    num_cpus: float = Field(1.0, ge=0.0, description="CPUs per replica", json_schema_extra=SCALE)
    max_model_len: int = Field(4096, ge=128)
    dtype: str = "bfloat16"
    enforce_eager: bool = Field(False, json_schema_extra=SCALE)
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="GPU memory fraction vLLM may use", json_schema_extra=SCALE
    )
    cpu_kv_cache_gib: int = Field(
        1, ge=1, description="KV cache in host RAM, for CPU-only engines", json_schema_extra=SCALE
    )
    batch_size: int = Field(
        1, ge=1, description="queries per Ray Data batch; a batch is committed when its slowest query is done",
        json_schema_extra=SCALE,
    )
    batches_in_flight: int = Field(
        64, ge=1, description="batches each replica works on at once; keep it above the engine's running sequences",
        json_schema_extra=SCALE,
    )
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed through to vLLM")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to the tokenizer's chat template, e.g. {enable_thinking: true} for Qwen3",
    )
    reasoning_parser: str | None = Field(
        None,
        description=(
            "a vLLM reasoning parser (`deepseek_r1`, `qwen3`, ...) that splits the generated text into reasoning"
            " and answer, written back as `<think>…</think>` then the answer: for templates that open `<think>` in the"
            " prompt"
        ),
    )

    @model_validator(mode="after")
    def _gpus_cover_tensor_parallelism(self) -> "VLLMEngineConfig":
        if self.num_gpus and self.num_gpus < self.tensor_parallel_size:
            raise ValueError(
                f"num_gpus ({self.num_gpus:g}) must cover tensor_parallel_size ({self.tensor_parallel_size})"
            )
        return _replica_range(self)


class OpenAIEngineConfig(_Strict):
    """An OpenAI-compatible HTTP endpoint: a vLLM server, a Ray Serve deployment or a hosted API."""

    kind: Literal["openai"]
    # Where the endpoint is and how hard it is driven: a server that moves or a new key changes no data.
    base_url: str = Field(description="e.g. http://head:8000/v1", json_schema_extra=SCALE)
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key", json_schema_extra=SCALE
    )
    replicas: int = Field(1, ge=1, description="actors sending requests", json_schema_extra=SCALE)
    max_replicas: int | None = Field(None, ge=1, description=MAX_REPLICAS, json_schema_extra=SCALE)
    num_cpus: float = Field(0.25, ge=0.0, json_schema_extra=SCALE)
    max_concurrency: int = Field(16, ge=1, description="requests in flight per actor", json_schema_extra=SCALE)
    requests_per_s: float | None = Field(
        None, gt=0.0, description="rate limit per actor", json_schema_extra=SCALE
    )
    max_retries: int = Field(
        5, ge=0, description="the client's own retries, with exponential backoff, on 429, 5xx, timeouts and dropped "
        "connections, before a request counts as failed", json_schema_extra=SCALE,
    )
    timeout_s: float = Field(600.0, gt=0.0, description="per request", json_schema_extra=SCALE)
    batch_size: int = Field(1, ge=1, json_schema_extra=SCALE)
    batches_in_flight: int = Field(64, ge=1, json_schema_extra=SCALE)
    reasoning: ReasoningSource = Field(
        "auto",
        description=(
            "where the reasoning is read from: `field` (the message's `reasoning_content` or `reasoning`, as DeepSeek's"
            " API and vLLM's --reasoning-parser send it; a response without it has no reasoning), `tags` (a"
            " `<think>` in the content; the field is ignored), `auto` (the field when present, else the tags)"
        ),
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="extra fields merged into every request body (provider-specific options)"
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="sent as the body's `chat_template_kwargs` (read by vLLM servers), e.g. {enable_thinking: true}",
    )

    @model_validator(mode="after")
    def _replicas(self) -> "OpenAIEngineConfig":
        return _replica_range(self)


class ReferenceEngineConfig(_Strict):
    """A dataset's own worked solutions as a teacher (GSM8K, MATH): each query is answered by the solution of the
    row with the same question in `paths`, then verified like any teacher's answer. Nothing is generated, so it
    costs no tokens: the baseline source the distilled teachers are compared with."""

    kind: Literal["reference"]
    # Like `input.paths`, where the files are is not what they hold: a moved file changes no data.
    paths: list[str] = Field(min_length=1, description="GSM8K or MATH JSONL files, local or object storage",
                             json_schema_extra=SCALE)
    replicas: int = Field(1, ge=1, json_schema_extra=SCALE)
    max_replicas: int | None = Field(None, ge=1, description=MAX_REPLICAS, json_schema_extra=SCALE)
    num_cpus: float = Field(0.25, ge=0.0, json_schema_extra=SCALE)
    batch_size: int = Field(1, ge=1, json_schema_extra=SCALE)
    batches_in_flight: int = Field(64, ge=1, json_schema_extra=SCALE)

    @field_validator("paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        """Local paths as absolute ones: the engine's actors may run in another folder."""
        return [p if "://" in p else os.path.abspath(p) for p in paths]

    @model_validator(mode="after")
    def _replicas(self) -> "ReferenceEngineConfig":
        return _replica_range(self)


def _engine_kind(value: Any) -> str:
    """`kind` may be left out: a local vLLM pool is the default engine."""
    return value.get("kind", "vllm") if isinstance(value, dict) else value.kind


EngineConfig = Annotated[
    Union[Annotated[VLLMEngineConfig, Tag("vllm")], Annotated[OpenAIEngineConfig, Tag("openai")]],
    Discriminator(_engine_kind),
]
# Teachers may also answer from a dataset's solutions; a judge or a model under evaluation must generate.
TeacherEngineConfig = Annotated[
    Union[Annotated[VLLMEngineConfig, Tag("vllm")], Annotated[OpenAIEngineConfig, Tag("openai")],
          Annotated[ReferenceEngineConfig, Tag("reference")]],
    Discriminator(_engine_kind),
]


class ServedModel(_Strict):
    """A model and the engine that serves it: what every engine is built from (teachers and the judge)."""

    model: str = Field(description="local path, Hugging Face id, s3:// URI, or `smollm2-135m-instruct`")
    engine: EngineConfig = Field(default_factory=VLLMEngineConfig)


class FaultPolicy(_Strict):
    """What a teacher does when requests fail. A failed request uses one of the row's `max_attempts` rounds and is
    recorded in the attempts log with its reason; a retryable one (timeout, 5xx, dropped connection) is tried again
    after a backoff. A row whose every round failed is rejected with that reason; the run goes on."""

    backoff_s: float = Field(
        2.0, ge=0.0, description="wait before a row retries a failed request; doubles with each failure of the row",
        json_schema_extra=SCALE,
    )
    backoff_max_s: float = Field(60.0, ge=0.0, json_schema_extra=SCALE)
    breaker_window: int = Field(
        20, ge=1, description="the circuit breaker looks at this many of the teacher's last finished rows",
        json_schema_extra=SCALE,
    )
    breaker_failure_rate: float | None = Field(
        0.9, gt=0.0, le=1.0, json_schema_extra=SCALE,
        description="stop the teacher, with one message, when this share of a full window's rows ended in request "
        "failures (a bad key, a wrong URL, a dead endpoint), instead of rejecting the corpus; null: never. Those "
        "rows are not committed, so a run after the fix retries them",
    )


class TeacherConfig(ServedModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    engine: TeacherEngineConfig = Field(default_factory=VLLMEngineConfig)
    system_prompt: str | None = None
    response_format: ResponseFormat = "think_answer"
    sampling: dict[str, SamplingConfig] = Field(
        default_factory=lambda: {"default": SamplingConfig()},
        description="per category, with `default` for the rest",
    )
    max_attempts: int = Field(4, ge=1, description="generation rounds per query, failed requests included")
    accept_threshold: float = Field(0.9, ge=0.0, le=1.0)
    log_text: bool = Field(
        True,
        description="keep each candidate's text in the attempts log, so a rejected answer can be read, verified again "
        "(jobs.verify) and scored; false keeps only verdicts and token counts",
    )
    faults: FaultPolicy = Field(default_factory=FaultPolicy)

    @field_validator("response_format")
    @classmethod
    def _samples_need_reasoning(cls, value: ResponseFormat) -> ResponseFormat:
        if value == "answer_only":
            raise ValueError("answer_only scores responses that show no reasoning (jobs.verify); distilled samples "
                             "need reasoning: use think_answer, think_then_answer or plain")
        return value

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
    # Read once into `queries/`: where the files were found does not change the data, and a moved corpus resumes.
    paths: list[str] = Field(
        min_length=1, description="JSONL or Parquet files or folders of them, local or s3://", json_schema_extra=SCALE
    )
    limit: int | None = Field(None, ge=1, description="first N valid queries only")
    max_row_bytes: int = Field(1_000_000, ge=1024)


class VerifierConfig(_Strict):
    replicas: int = Field(2, ge=1, description="checker actors, the fewest the pool keeps", json_schema_extra=SCALE)
    max_replicas: int | None = Field(None, ge=1, description=MAX_REPLICAS, json_schema_extra=SCALE)
    idle_s: float = Field(
        60.0, gt=0.0, json_schema_extra=SCALE,
        description="seconds a pool (checkers or judges) could carry its calls with one member fewer before it "
                    "retires one, down to its fewest",
    )
    num_cpus: float = Field(0.5, ge=0.0, json_schema_extra=SCALE)
    math_timeout_s: float = Field(10.0, gt=0.0, description="hard wall-clock limit per math verification")
    code: bool = Field(
        True,
        description="run code answers in the sandbox; a run refuses to start where the sandbox cannot isolate. "
        "false rejects code queries before generation (code_verification_disabled)",
    )
    code_max_tests: int = Field(10, ge=1, description="tests run per code answer (the paper uses up to 10)")
    code_wall_s: float = Field(5.0, gt=0.0, description="wall-clock limit per test run")
    code_cpu_s: int = Field(5, ge=1, description="CPU-time limit per test run")
    code_memory_mb: int = Field(512, ge=64, description="address-space limit per test run")

    @model_validator(mode="after")
    def _replicas(self) -> "VerifierConfig":
        return _replica_range(self)


class JudgeConfig(ServedModel):
    """The LLM judge for answers no program checks: free-form science, chat and general."""

    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.0, max_tokens=512))
    max_retries: int = Field(2, ge=0, description="new judgements asked for when a reply holds no parseable score")


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
    judge: JudgeConfig | None = Field(None, description="without one, chat, general and free-form science are skipped")
    ray: RayConfig = Field(default_factory=RayConfig)
    shard_rows: int = Field(256, ge=1, description="rows per output Parquet file", json_schema_extra=SCALE)
    flush_seconds: float = Field(
        30.0, gt=0.0, description="longest time a finished row waits to be written", json_schema_extra=SCALE
    )

    @model_validator(mode="after")
    def _unique_teachers(self) -> "DistillConfig":
        names = [t.name for t in self.teachers]
        if len(names) != len(set(names)):
            raise ValueError(f"teacher names must be unique, got {names}")
        return self

    def config_hash(self) -> str:
        """Hash of what determines the outputs: where the run happens (ray, storage) and its scale settings are left
        out, so a resumed run may get more replicas or another endpoint address."""
        payload = data_settings(self)
        for key in ("ray", "storage_options", "output"):
            payload.pop(key)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def load_config(model: type[M], path: str | Path | None) -> M:
    """Read `path` as a `model`; no path gives the model's defaults (for jobs whose config file is optional)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) if path is not None else {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return parse_config(model, raw, source=str(path) if path is not None else "defaults")


def parse_config(model: type[M], raw: Any, source: str = "config") -> M:
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid config\n{_field_errors(err)}") from None


def _field_errors(err: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors())


class VerifyJobConfig(_Strict):
    """`jobs.verify`: score responses that already exist."""

    response_format: ResponseFormat = Field(
        "think_answer", description="how the responses are written (pipeline/response_format.py); `answer_only` for "
                                    "systems that show no reasoning: the whole response is the answer"
    )
    verifiers: VerifierConfig = Field(default_factory=VerifierConfig)
    judge: JudgeConfig | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    ray: RayConfig = Field(default_factory=RayConfig)


# ---- post-generation filtering (`jobs.filter`) -------------------------------------------------------------------


class NgramFilterConfig(_Strict):
    """Repetition in the student's tokens: a response that loops, and a paragraph pasted into many responses."""

    n: int = Field(20, ge=2, description="tokens per n-gram")
    max_repeats: int = Field(20, ge=1, description="an n-gram occurring more often than this within one response is "
                                                   "`ngram_repetition`")
    corpus_max_responses: int | None = Field(
        None, ge=1,
        description="an n-gram found in more than this many of a teacher's responses is boilerplate, and every "
        "response holding one is `corpus_boilerplate`; null (the default): off, since a 20-token run shared by many "
        "correct answers (a restated problem, a code template) is not by itself a defect; set it from the corpus size",
    )


# A scorer sees whole samples (prompt + response) and many of them per batch.
_SCORER_ENGINE = {"max_model_len": 8192, "batch_size": 64}


class PerplexityFilterConfig(_Strict):
    """The response's perplexity under a reference model, given its prompt in that model's chat template."""

    model: str = Field("smollm2-135m-instruct",
                       description="local path, Hugging Face id, s3:// URI, or `smollm2-135m-instruct`")
    engine: VLLMEngineConfig = Field(
        default_factory=lambda: VLLMEngineConfig(**_SCORER_ENGINE),
        description="the vLLM actor pool; `batch_size` is samples per Ray Data batch; a sample longer than "
        "max_model_len in the reference model's tokens cannot be scored and is rejected as `perplexity`",
    )
    max_batch_tokens: int = Field(
        8192, ge=128, json_schema_extra=SCALE,
        description="vLLM's max_num_batched_tokens: bounds the [tokens, vocab] log-softmax of each engine step",
    )
    max_ppl: float | None = Field(None, gt=1.0, description="absolute threshold: a higher perplexity is rejected")
    max_ppl_percentile: float | None = Field(
        None, gt=0.0, lt=100.0,
        description="threshold as a percentile of the teacher's perplexities (95 rejects the highest 5%)",
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _scorer_defaults(cls, value: Any) -> Any:
        """Settings left out keep the scorer's defaults, not the teachers'."""
        return {**_SCORER_ENGINE, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _one_threshold(self) -> "PerplexityFilterConfig":
        if self.max_ppl is not None and self.max_ppl_percentile is not None:
            raise ValueError("give max_ppl or max_ppl_percentile, not both")
        return self


class FilterConfig(_Strict):
    """`jobs.filter`: score a distill run's accepted samples, then keep those that pass."""

    student: str = Field("smollm2-135m-instruct",
                         description="the student's tokenizer (lengths, n-grams): a model as in `TrainConfig.model`")
    max_tokens: int = Field(32768, ge=16, description="a training sequence (prompt + response in the student's chat "
                                                      "template) longer than this is `too_long`")
    ngram: NgramFilterConfig = Field(default_factory=NgramFilterConfig)
    perplexity: PerplexityFilterConfig | None = Field(
        default_factory=PerplexityFilterConfig, description="null: no perplexity scoring (ppl is null)"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url")
    ray: RayConfig = Field(default_factory=RayConfig)
    shard_rows: int = Field(1024, ge=1, description="scores per filter_scores Parquet file", json_schema_extra=SCALE)

    def scoring_hash(self) -> str:
        """Hash of what phase 1 (filter_scores) computes; thresholds are left out, so changing one re-decides
        without re-scoring."""
        payload = {"student": self.student, "n": self.ngram.n}
        if self.perplexity is not None:
            payload["perplexity"] = data_settings(self.perplexity)
            for threshold in ("max_ppl", "max_ppl_percentile"):
                payload["perplexity"].pop(threshold)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def config_hash(self) -> str:
        """Hash of what decides the filtered data: scoring settings and thresholds."""
        payload = data_settings(self)
        for key in ("ray", "storage_options"):
            payload.pop(key)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ---- student training (`jobs.train`) -------------------------------------------------------------------------------


class TrainSourceConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the source in logs and the tokenized cache")
    path: str = Field(description="accepted-sample Parquet: a folder (e.g. DISTILL_OUTPUT/teachers/NAME/accepted) or "
                                  "one file, local or object storage")
    weight: float = Field(1.0, gt=0.0, description="times each sample is seen per epoch; a fractional part is a seeded "
                                                   "subset, drawn anew each epoch")


class TrainDataConfig(_Strict):
    sources: list[TrainSourceConfig] = Field(min_length=1)
    max_seq_len: int = Field(32768, ge=16, description="tokens per pack; longer samples are dropped and counted")
    seed: int = Field(0, description="the data order of epoch e is a function of (seed, e) only")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[TrainSourceConfig]) -> list[TrainSourceConfig]:
        names = [s.name for s in sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique, got {names}")
        return sources


class OptimizerConfig(_Strict):
    """AdamW with linear warmup and a cosine decay, stepped once per global batch."""

    lr: float = Field(8e-5, gt=0.0, description="peak learning rate (the paper: 8e-5)")
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0.0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="fraction of all steps spent warming up")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="the cosine's floor, as a fraction of `lr`")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="gradient clipping; None turns it off")


class DeepSpeedStrategyConfig(_Strict):
    kind: Literal["deepspeed"] = "deepspeed"
    zero_stage: int = Field(3, ge=0, le=3)
    offload_optimizer: bool = Field(False, description="optimizer states in host memory (uses DeepSpeed's CPU Adam)")
    offload_params: bool = Field(False, description="parameters in host memory; ZeRO-3 only")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="merged over the generated DeepSpeed config (e.g. zero bucket sizes)"
    )

    @model_validator(mode="after")
    def _offload_needs_zero(self) -> "DeepSpeedStrategyConfig":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        return self


class FSDPStrategyConfig(_Strict):
    """PyTorch FSDP2 (`fully_shard`) per decoder layer and at the root."""

    kind: Literal["fsdp2"]
    reshard_after_forward: bool = Field(True, description="free gathered weights after forward (ZeRO-3-like)")
    cpu_offload: bool = False


def _strategy_kind(value: Any) -> str:
    """`kind` may be left out: DeepSpeed is the default strategy."""
    return value.get("kind", "deepspeed") if isinstance(value, dict) else value.kind


StrategyConfig = Annotated[
    Union[Annotated[DeepSpeedStrategyConfig, Tag("deepspeed")], Annotated[FSDPStrategyConfig, Tag("fsdp2")]],
    Discriminator(_strategy_kind),
]


class TrainScalingConfig(_Strict):
    """Ray Train's ScalingConfig: the same file runs on a laptop-sized local cluster or on many GPU nodes."""

    num_workers: int = Field(1, ge=1, description="data-parallel ranks")
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="e.g. {CPU: 8, GPU: 1}; empty: 1 CPU per worker, or 1 GPU with use_gpu"
    )
    peak_tflops_per_worker: float | None = Field(
        None, gt=0.0, description="MFU's denominator; default: the GPU's data-sheet bf16 peak, or on CPU the "
                                  "measured matmul throughput of one worker"
    )


class TrainConfig(_Strict):
    """`jobs.train`: supervised fine-tuning of a student on accepted samples, on Ray Train."""

    model: str = Field(description="student: local path, Hugging Face id, s3:// URI, or `smollm2-135m-instruct`")
    data: TrainDataConfig
    output: str = Field(description="tokenized data, checkpoints and the final model: local path or s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for every s3:// path")
    epochs: int = Field(2, ge=1)
    global_batch_samples: int = Field(64, ge=1, description="samples per optimizer step, across all ranks")
    precision: Literal["bf16", "fp32"] = "bf16"
    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] = Field(
        "sdpa", description="flash_attention_2 on GPU; sdpa or eager on CPU"
    )
    gradient_checkpointing: bool = True
    loss_chunk_tokens: int = Field(
        1024, ge=1, description="labelled positions whose logits exist at once (pipeline/train_loss.py)"
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    strategy: StrategyConfig = Field(default_factory=DeepSpeedStrategyConfig)
    scaling: TrainScalingConfig = Field(default_factory=TrainScalingConfig)
    checkpoint_every_steps: int = Field(100, ge=1, description="also after the last step")
    keep_checkpoints: int = Field(2, ge=1, description="most recent checkpoints kept in storage")
    max_failures: int = Field(0, ge=-1, description="worker failures recovered from the last checkpoint; -1: no limit")
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _flash_attention_needs_gpu(self) -> "TrainConfig":
        if self.attn_implementation == "flash_attention_2" and not self.scaling.use_gpu:
            raise ValueError("attn_implementation flash_attention_2 needs scaling.use_gpu")
        return self

    def config_hash(self) -> str:
        """Hash of what determines the trained model; where and how robustly it runs is left out."""
        payload = self.model_dump(
            mode="json", exclude={"ray", "storage_options", "output", "keep_checkpoints", "max_failures"}
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ---- preprocessing (`jobs.preprocess`) ------------------------------------------------------------------------------


class QueryFilterConfig(_Strict):
    """Which queries are dropped before distillation; sizes are in characters of normalized text."""

    min_chars: int = Field(10, ge=0, description="shorter is `too_short` (the shortest MATH problems have 16)")
    max_chars: int = Field(20_000, ge=1, description="longer is `too_long`")
    max_noise_ratio: float = Field(
        0.02, ge=0.0, le=1.0, description="share of invisible, private-use, unassigned or U+FFFD characters"
    )
    max_table_fraction: float = Field(
        0.3, ge=0.0, le=1.0,
        description="share of non-blank lines in Markdown or ASCII tables above which it is dropped",
    )
    url_exempt_categories: list[Category] = Field(
        default_factory=lambda: [Category.code], description="categories whose URLs are data (test inputs), not links"
    )

    @model_validator(mode="after")
    def _sizes_ordered(self) -> "QueryFilterConfig":
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) exceeds max_chars ({self.max_chars})")
        return self


class NearDedupConfig(_Strict):
    """MinHash over character n-grams of each text's near form (`normalize.near_form`); texts that state other
    numbers never match. Defaults measured with `python -m bench.near_duplicates` (README, "Near-duplicate
    threshold")."""

    threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="estimated Jaccard similarity of the n-grams of two near forms"
    )
    shingle_size: int = Field(5, ge=1, le=8, description="characters (bytes of UTF-8) per shingle")
    num_perm: int = Field(128, ge=16, description="MinHash permutations")
    seed: int = 1


class DedupConfig(_Strict):
    partitions: int = Field(
        16, ge=1, description="hash partitions of the exact and near-duplicate shuffles: a worker holds one at a time"
    )
    near: NearDedupConfig | None = Field(default_factory=NearDedupConfig, description="null: exact duplicates only")


class EmbeddingConfig(_Strict):
    """The embedding actor pool: `all-minilm-l6-v2` (offline, CPU, int8 on onnxruntime) or e.g. `BAAI/bge-m3` on
    GPUs (`num_gpus: 1`, which makes the device `cuda` and the backend `torch`)."""

    model: str = "all-minilm-l6-v2"
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        None, validate_default=True,  # filled in by `_defaults`
        description="torch: sentence-transformers as published; onnx: the same graph on onnxruntime (CPU only); "
        "onnx-int8: with int8 weights. Default: onnx-int8 on cpu, torch on cuda",
    )
    device: Literal["cpu", "cuda"] = Field(None, validate_default=True, description="default: cuda when num_gpus > 0")
    threshold: float = Field(description="cosine similarity that alone makes a query a benchmark item; defaults to "
                             "the value measured for a known model")
    gray_threshold: float = Field(description="cosine similarity enough when the query states every number of the "
                                  "item; defaults to the measured value, or to `threshold` (no gray zone)")
    gray_min_numbers: int = Field(3, ge=1, description="numbers an item must state for its gray zone; one or two "
                                  "are shared by chance")
    candidates: int = Field(5, ge=1, description="nearest benchmark items tried per query, nearest first")
    batch_size: int = Field(128, ge=1, description="texts per batch, for the model and for Ray Data")
    replicas: int = Field(1, ge=1, json_schema_extra=SCALE)
    max_replicas: int | None = Field(None, ge=1, description=MAX_REPLICAS, json_schema_extra=SCALE)
    num_cpus: float = Field(1.0, ge=0.0, description="per replica", json_schema_extra=SCALE)
    num_gpus: float = Field(0.0, ge=0.0, description="per replica; > 0 with device cuda", json_schema_extra=SCALE)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        from pipeline.preprocess.embeddings import MEASURED_GRAY_THRESHOLDS, MEASURED_THRESHOLDS

        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("device") is None:
            data["device"] = "cuda" if (data.get("num_gpus") or 0) > 0 else "cpu"
        if data.get("backend") is None:
            data["backend"] = "torch" if data["device"] == "cuda" else "onnx-int8"
        model = data.get("model", cls.model_fields["model"].default)
        if data.get("threshold") is None:
            if model not in MEASURED_THRESHOLDS:
                raise ValueError(f"threshold: needed for model {model!r}; measured: {sorted(MEASURED_THRESHOLDS)}")
            data["threshold"] = MEASURED_THRESHOLDS[model]
        if data.get("gray_threshold") is None:
            data["gray_threshold"] = MEASURED_GRAY_THRESHOLDS.get(model, data["threshold"])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "EmbeddingConfig":
        if self.gray_threshold > self.threshold:
            raise ValueError(f"gray_threshold: {self.gray_threshold} is above threshold {self.threshold}")
        if (self.device == "cuda") != (self.num_gpus > 0):
            raise ValueError(f"device: {self.device} with num_gpus {self.num_gpus} (cuda needs num_gpus > 0)")
        if self.device == "cuda" and self.backend != "torch":
            raise ValueError(f"backend: {self.backend} runs on CPU (onnxruntime); on cuda use torch")
        return _replica_range(self)


class DecontaminationConfig(_Strict):
    benchmarks: list[str] | None = Field(
        None,
        description="benchmark files (JSONL, JSONL.gz, Parquet; local or s3://) or `humaneval`; `none` (or []) for "
        "none. No default: while unsaid (null), jobs.preprocess refuses to run rather than check against nothing",
    )
    ngram_size: int = Field(8, ge=1, description="words per n-gram")
    ngram_threshold: float = Field(0.5, gt=0.0, le=1.0, description="share of a benchmark item's n-grams in a query")
    embedding: EmbeddingConfig | None = Field(
        default_factory=EmbeddingConfig, description="null: exact and n-gram matching only"
    )

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _none_is_no_benchmarks(cls, value: Any) -> Any:
        """`none` in YAML, or `--benchmarks none`, says in words what an empty list says; null stays unsaid."""
        return [] if value in ("none", ["none"]) else value

    @field_validator("benchmarks")
    @classmethod
    def _none_stands_alone(cls, value: list[str] | None) -> list[str] | None:
        if value and "none" in value:
            raise ValueError("`none` (no benchmarks) cannot be listed with benchmark files")
        return value


class PreprocessConfig(_Strict):
    """`jobs.preprocess`: filter, deduplicate and decontaminate a query corpus."""

    max_row_bytes: int = Field(1_000_000, ge=1024)
    filters: QueryFilterConfig = Field(default_factory=QueryFilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url")
    ray: RayConfig = Field(default_factory=RayConfig)

    def with_benchmarks(self, benchmarks: list[str]) -> "PreprocessConfig":
        """The config with `benchmarks` (`--benchmarks`) in place of its own, validated like a config file's."""
        decontamination = {**self.decontamination.model_dump(), "benchmarks": benchmarks}
        return self.model_copy(update={"decontamination": parse_config(DecontaminationConfig, decontamination,
                                                                       source="--benchmarks")})

    def config_hash(self) -> str:
        """Hash of what decides which queries are kept; where the run happens is left out."""
        payload = self.model_dump(mode="json", exclude={"ray", "storage_options"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ---- evaluation (`jobs.evaluate`) -----------------------------------------------------------------------------------

# The paper's protocol (AM team, §3.2); DeepSeek-R1 and open-r1 use the same with max_tokens 32768.
PAPER_SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 49152, "seed": 0}
# Context a vLLM engine keeps for the prompt beside `max_tokens` when `max_model_len` is left out.
EVAL_PROMPT_TOKENS = 4096


class EvalModel(ServedModel):
    """A model under evaluation: a checkpoint on a vLLM actor pool (a local folder, a Hugging Face id, an s3:// URI, a
    `jobs.train` output folder as it is, or `smollm2-135m-instruct`), or an OpenAI-compatible endpoint
    (`engine: {kind: openai, base_url: ...}`). Each problem is one request for all its samples."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the model's folder and its rows")
    system_prompt: str | None = Field(
        None, description="null: the instructions of `response_format`; an empty string sends no system prompt"
    )
    response_format: ResponseFormat = Field(
        "think_answer", description="how responses are parsed before scoring (pipeline/response_format.py)"
    )
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(**PAPER_SAMPLING),
        description="the paper's protocol by default; keys left out keep it. `n` is each benchmark's `samples`",
    )
    request_attempts: int = Field(
        4, ge=1, description="tries of a problem's request; a problem whose tries all failed is rejected with why"
    )
    faults: FaultPolicy = Field(default_factory=FaultPolicy, description="backoff between tries, circuit breaker")

    @model_validator(mode="before")
    @classmethod
    def _room_for_the_protocol(cls, data: Any) -> Any:
        """A vLLM engine left without `max_model_len` gets room for `max_tokens` plus a prompt, not the teachers'
        4096 that would cut every long answer short."""
        if not isinstance(data, dict):
            return data
        engine = data.get("engine") or {}
        if isinstance(engine, dict) and engine.get("kind", "vllm") == "vllm" and "max_model_len" not in engine:
            sampling = data.get("sampling") or {}
            max_tokens = sampling.get("max_tokens", PAPER_SAMPLING["max_tokens"]) if isinstance(sampling, dict) else 0
            if isinstance(max_tokens, int):
                data = {**data, "engine": {**engine, "max_model_len": max_tokens + EVAL_PROMPT_TOKENS}}
        return data

    @field_validator("sampling", mode="before")
    @classmethod
    def _paper_defaults(cls, value: Any) -> Any:
        return {**PAPER_SAMPLING, **value} if isinstance(value, dict) else value

    @field_validator("sampling")
    @classmethod
    def _samples_per_benchmark(cls, value: SamplingConfig) -> SamplingConfig:
        if value.n != 1:
            raise ValueError("n: samples per problem are set per benchmark (`benchmarks[].samples`)")
        return value

    @model_validator(mode="after")
    def _context_holds_the_answer(self) -> "EvalModel":
        engine = self.engine
        if isinstance(engine, VLLMEngineConfig) and engine.max_model_len <= self.sampling.max_tokens:
            raise ValueError(
                f"engine.max_model_len ({engine.max_model_len}) leaves no room for a prompt beside sampling.max_tokens "
                f"({self.sampling.max_tokens})"
            )
        return self


class EvalBenchmark(_Strict):
    """One benchmark of `pipeline.benchmarks.BENCHMARKS`, read from `path` (or its default)."""

    name: str = Field(description="a key of pipeline.benchmarks.BENCHMARKS: aime24, aime25, math500, gsm8k, ...")
    # Where the file is found does not change the problems: a moved file resumes the same evaluation.
    path: str | None = Field(
        None, json_schema_extra=SCALE,
        description="JSONL or Parquet, local or s3://; required where the benchmark ships no default (LiveCodeBench, "
        "GPQA-Diamond)",
    )
    samples: int | None = Field(None, ge=1, description="samples per problem; null: the benchmark's protocol")
    limit: int | None = Field(
        None, ge=1, json_schema_extra=SCALE,
        description="the first N problems only; raising it later continues the same evaluation with the rest",
    )
    seed: int = Field(0, description="orders multiple-choice options (GPQA)")
    release_version: str | None = Field(None, description="LiveCodeBench: e.g. release_v5")
    date_from: str | None = Field(None, description="LiveCodeBench: first contest date kept, YYYY-MM-DD")
    date_to: str | None = Field(None, description="LiveCodeBench: last contest date kept, YYYY-MM-DD")

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        """YAML reads an unquoted 2024-10-01 as a date; it stays the text the user wrote."""
        return value.isoformat() if hasattr(value, "isoformat") else value

    @field_validator("name")
    @classmethod
    def _known_benchmark(cls, value: str) -> str:
        from pipeline.benchmarks import BENCHMARKS

        if value not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {value!r}; use one of {sorted(BENCHMARKS)}")
        return value

    @model_validator(mode="after")
    def _path_where_required(self) -> "EvalBenchmark":
        from pipeline.benchmarks import BENCHMARKS

        if self.path is None and BENCHMARKS[self.name].path_required:
            raise ValueError(f"path: {self.name} is read from a file you supply; give its path")
        return self

    def samples_per_problem(self) -> int:
        from pipeline.benchmarks import BENCHMARKS

        return self.samples or BENCHMARKS[self.name].samples_per_problem


class EvaluateConfig(_Strict):
    """`jobs.evaluate`: n samples per benchmark problem from each model, each scored by distillery's verifiers."""

    models: list[EvalModel] = Field(min_length=1)
    benchmarks: list[EvalBenchmark] = Field(min_length=1)
    ks: list[int] = Field(
        default_factory=lambda: [1, 4, 16, 64],
        description="k of pass@k and cons@k; those above a benchmark's samples per problem are left out for it",
    )
    output: str = Field(description="folder for samples, results and report: a local path or s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url")
    verifiers: VerifierConfig = Field(
        default_factory=VerifierConfig, description="the code verifier's per-test wall limit comes from the benchmark"
    )
    ray: RayConfig = Field(default_factory=RayConfig)
    shard_rows: int = Field(256, ge=1, description="samples per output Parquet file", json_schema_extra=SCALE)
    flush_seconds: float = Field(
        30.0, gt=0.0, description="longest time a finished problem waits to be written", json_schema_extra=SCALE
    )

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError(f"needs k >= 1, got {value}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_names(self) -> "EvaluateConfig":
        named = {"models": [m.name for m in self.models], "benchmarks": [b.name for b in self.benchmarks]}
        for field, names in named.items():
            if len(names) != len(set(names)):
                raise ValueError(f"{field}: names must be unique, got {names}")
        return self

    def config_hash(self) -> str:
        """Hash of what determines the samples. Where the run happens, its scale and `ks` (metrics only, computed
        again at every run) are left out, so a resumed run may change them."""
        payload = data_settings(self)
        for key in ("ray", "storage_options", "output", "ks"):
            payload.pop(key)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ---- serving (`jobs.serve`) -----------------------------------------------------------------------------------------
# A served model is a `ServedModel` on a local vLLM engine, so a teacher's or judge's block can be copied over. Replica
# count is autoscaled: the fixed pool's settings are refused with a message pointing at `autoscaling`, whose field
# names are Ray Serve's own.

# Engine settings of a fixed actor pool that mean nothing behind an autoscaled endpoint.
_POOL_SETTINGS = ("replicas", "max_replicas", "batch_size", "batches_in_flight")


class AutoscalingConfig(_Strict):
    """Ray Serve's autoscaling of the model's replicas: a replica is added while the mean number of requests in flight
    per replica stays above `target_ongoing_requests` for `upscale_delay_s`, and removed while it stays below for
    `downscale_delay_s`."""

    min_replicas: int = Field(1, ge=0, description="0 lets the deployment scale to zero when idle")
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0, description="replicas at deploy time; None is min_replicas")
    target_ongoing_requests: float = Field(16.0, gt=0.0, description="requests in flight per replica to aim for")
    upscale_delay_s: float = Field(30.0, ge=0.0)
    downscale_delay_s: float = Field(600.0, ge=0.0)
    metrics_interval_s: float = Field(10.0, gt=0.0, description="how often replicas report their load")
    look_back_period_s: float = Field(30.0, gt=0.0, description="window the load is averaged over")

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas ({self.initial_replicas}) is outside [min_replicas, max_replicas]")
        return self


class HTTPConfig(_Strict):
    host: str = Field("127.0.0.1", description="0.0.0.0 to accept requests from other hosts")
    port: int = Field(8000, ge=1, le=65535)


class ServeConfig(ServedModel):
    """`python -m jobs.serve --config FILE`."""

    engine: VLLMEngineConfig = Field(default_factory=VLLMEngineConfig)
    served_model_name: str | None = Field(
        None, description="the `model` clients send; None is the model's folder name, or the embedded model's name"
    )
    app_name: str = Field("distillery", pattern=r"^[A-Za-z0-9_.-]+$", description="the Serve application's name")
    route_prefix: str = Field("/", pattern=r"^/", description="the OpenAI routes live under ROUTE_PREFIX/v1")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_ongoing_requests: int = Field(
        64, ge=1, description="requests one replica accepts at once; more wait in Serve's queue"
    )
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for an s3:// model")
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("engine")
    @classmethod
    def _no_pool_settings(cls, engine: VLLMEngineConfig) -> VLLMEngineConfig:
        fixed = [name for name in _POOL_SETTINGS if name in engine.model_fields_set]
        if fixed:
            raise ValueError(
                f"{fixed[0]} sizes a fixed actor pool; a served model scales with autoscaling.min_replicas and "
                "autoscaling.max_replicas"
            )
        return engine

    @property
    def model_name(self) -> str:
        """The name the endpoint answers to in `/v1/models` and expects in requests."""
        if self.served_model_name:
            return self.served_model_name
        if self.model == EMBEDDED_MODEL:
            return EMBEDDED_MODEL
        return posixpath.basename(self.model.rstrip("/")) or self.model


# ---- the whole experiment (`jobs.experiment`) ----------------------------------------------------------------------
# Each phase section is its job's own config, less what the experiment derives (outputs, the inputs a phase takes
# from the one before it, `storage_options` and `ray`, given once at the top). `pipeline.experiment` validates each
# section as that job's config class, so a field is documented, defaulted and checked in one place, and names a bad
# one by its path in the experiment's file (`distill.teachers.0.model`).


class QuerySourceConfig(_Strict):
    """A query file of the experiment: all of it, or a sample of its first lines."""

    path: str = Field(description="JSONL, JSONL.gz or Parquet, a file or a folder of them, local or s3://")
    limit: int | None = Field(
        None, ge=1, description="its first N lines only (a JSONL or JSONL.gz file): a few hundred queries of a corpus"
    )


class ExperimentConfig(_Strict):
    """`jobs.experiment`: queries → preprocess → distill (every teacher over the same ids) → filter → one student per
    teacher (and one on all of them with `train.mix`) → evaluate every student and the base model → report."""

    output: str = Field(description="root of every phase's outputs: a local path or s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for every phase")
    queries: list[QuerySourceConfig] = Field(min_length=1, description="the query corpus, preprocessed first")
    preprocess: dict[str, Any] = Field(
        default_factory=dict,
        description="PreprocessConfig; `decontamination.benchmarks` left out is every benchmark `evaluate` scores on",
    )
    distill: dict[str, Any] = Field(
        description="DistillConfig less `input.paths` and `output`: the teachers distil the preprocess phase's `kept/`"
    )
    filter: dict[str, Any] = Field(
        default_factory=dict, description="FilterConfig; `student` left out is `train.model`'s tokenizer"
    )
    train: dict[str, Any] = Field(
        description="TrainConfig less `data.sources` and `output`: one student per teacher, trained on its filtered "
        "samples; `mix: true` adds the student `mix`, trained on every teacher's",
    )
    evaluate: dict[str, Any] = Field(
        description="EvaluateConfig less `models` and `output`: `student` (an EvalModel less `name` and `model`) is "
        "how every student is evaluated; `base` overrides it for the base model (`train.model`), null leaves it out",
    )
    ray: RayConfig = Field(default_factory=RayConfig)
