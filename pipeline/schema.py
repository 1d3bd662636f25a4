"""The records distillery reads and writes, defined once: queries, samples, attempts and rejects.

Each record is a pydantic model (what code builds and validates) plus an Arrow schema (what lands in Parquet).
Nested, per-category values (a query's reference, a verdict's details) travel as JSON strings in Arrow, because
their shape differs by category and Arrow wants one type per column.
This module must never import Ray or vLLM.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Annotated, Any, Literal, Union

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Category(str, Enum):
    math = "math"
    code = "code"
    science = "science"
    instruction_following = "instruction_following"
    chat = "chat"
    general = "general"


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


# ---- references: what a verifier checks a response against -------------------------------------------------------


class AnswerReference(BaseModel):
    """Math (a gold expression) or science (a choice letter or a short answer)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    answer: str = Field(min_length=1)


class AssertTests(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["assert"]
    setup: str = ""
    asserts: list[str] = Field(min_length=1)


class StdioCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    input: str
    output: str


class StdioTests(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["stdio"]
    cases: list[StdioCase] = Field(min_length=1)


class CodeReference(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    language: Literal["python", "cpp"] = "python"
    tests: Annotated[Union[AssertTests, StdioTests], Field(discriminator="kind")]
    entry_point: str | None = None
    # How stdout is compared with a stdio test's output: whitespace-split tokens, or LiveCodeBench's own rule.
    output_match: Literal["tokens", "livecodebench"] = "tokens"


class Instruction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class InstructionReference(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    instructions: list[Instruction] = Field(min_length=1)


class FreeReference(BaseModel):
    """Chat and general queries: an optional reference answer for the judge."""

    model_config = ConfigDict(frozen=True, extra="allow")
    answer: str | None = None


_REFERENCE_TYPE: dict[Category, type[BaseModel]] = {
    Category.math: AnswerReference,
    Category.code: CodeReference,
    Category.science: AnswerReference,
    Category.instruction_following: InstructionReference,
    Category.chat: FreeReference,
    Category.general: FreeReference,
}
_REFERENCE_REQUIRED = {Category.math, Category.code, Category.instruction_following}


# ---- queries ------------------------------------------------------------------------------------------------------


class Query(BaseModel):
    """One distillation query in the public corpus format (see README, "Query format")."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = ""
    category: Category
    messages: list[Message] = Field(min_length=1)
    reference: dict[str, Any] | None = None
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _expand_prompt(cls, data: Any) -> Any:
        # `prompt` is shorthand for a single user message; giving both is ambiguous.
        if isinstance(data, dict) and "prompt" in data:
            data = dict(data)
            prompt = data.pop("prompt")
            if "messages" in data:
                raise ValueError("give either `prompt` or `messages`, not both")
            if not isinstance(prompt, str):
                raise ValueError("`prompt` must be a string")
            data["messages"] = [{"role": "user", "content": prompt}]
        return data

    @field_validator("messages")
    @classmethod
    def _messages_are_a_conversation(cls, messages: list[Message]) -> list[Message]:
        turns = [m for m in messages if m.role != "system"]
        if not turns or turns[-1].role != "user":
            raise ValueError("the last message must be a user turn")
        if any(not m.content.strip() for m in turns if m.role == "user"):
            raise ValueError("a user turn is empty")
        return messages

    @model_validator(mode="after")
    def _check_reference_and_id(self) -> "Query":
        if self.reference is None and self.category in _REFERENCE_REQUIRED:
            raise ValueError(f"category {self.category.value!r} needs a `reference`")
        if self.reference is not None:
            _REFERENCE_TYPE[self.category].model_validate(self.reference)
        if not self.id:
            object.__setattr__(self, "id", content_id(self))
        return self

    def typed_reference(self) -> BaseModel | None:
        return None if self.reference is None else _REFERENCE_TYPE[self.category].model_validate(self.reference)

    def user_turns(self) -> list[str]:
        return [m.content for m in self.messages if m.role == "user"]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category.value,
            "messages": [m.model_dump() for m in self.messages],
            "reference": None if self.reference is None else json.dumps(self.reference, sort_keys=True),
            "source": self.source,
            "metadata": json.dumps(self.metadata, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Query":
        """Inverse of `to_row`; also accepts rows whose nested fields are already dicts (user Parquet)."""
        data = {k: v for k, v in row.items() if k in QUERY_SCHEMA.names and v is not None}
        for key in ("reference", "metadata"):
            if isinstance(data.get(key), str):
                data[key] = json.loads(data[key])
        if "prompt" in row and row["prompt"] is not None and "messages" not in data:
            data["prompt"] = row["prompt"]
        return cls.model_validate(data)


def content_id(query: Query) -> str:
    """A stable id for a query that came without one: a hash of what makes it this query."""
    payload = json.dumps(
        [query.category.value, [m.model_dump() for m in query.messages], query.reference], sort_keys=True
    )
    return "q-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


_MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

QUERY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("category", pa.string()),
        ("messages", _MESSAGES_TYPE),
        ("reference", pa.string()),  # JSON
        ("source", pa.string()),
        ("metadata", pa.string()),  # JSON
    ]
)


# ---- distillation outputs -----------------------------------------------------------------------------------------


class Sample(BaseModel):
    """An accepted distillation sample: the query's turns plus the teacher's answers in the paper's format."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    category: Category
    teacher: str
    messages: list[Message]
    think: str  # reasoning of the final assistant turn
    answer: str  # answer of the final assistant turn
    verify_score: float
    verifier: str
    verify_details: str  # JSON
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    source: str | None = None
    config_hash: str


SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("category", pa.string()),
        ("teacher", pa.string()),
        ("messages", _MESSAGES_TYPE),
        ("think", pa.string()),
        ("answer", pa.string()),
        ("verify_score", pa.float64()),
        ("verifier", pa.string()),
        ("verify_details", pa.string()),
        ("attempts", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("source", pa.string()),
        ("config_hash", pa.string()),
    ]
)


class Attempt(BaseModel):
    """One generated candidate and its verdict: the attempts log, a per-query difficulty signal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    teacher: str
    attempt: int  # 1-based attempt number
    candidate: int  # index among the `n` candidates of this attempt
    turn: int  # index of the user turn answered
    score: float
    verifier: str
    verify_details: str  # JSON
    failure: str | None  # reason code, None when the candidate passed
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    config_hash: str
    # The candidate as generated, reasoning folded back as a leading `<think>…</think>` (see
    # `response_format.with_reasoning`); None for a failed request, or when the teacher's `log_text` is off.
    text: str | None = None


ATTEMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("teacher", pa.string()),
        ("attempt", pa.int32()),
        ("candidate", pa.int32()),
        ("turn", pa.int32()),
        ("score", pa.float64()),
        ("verifier", pa.string()),
        ("verify_details", pa.string()),
        ("failure", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("config_hash", pa.string()),
        ("text", pa.string()),
    ]
)


class Reject(BaseModel):
    """Any input row that did not become a sample, with why: a malformed input row (stage `input`, no teacher) or
    a query a teacher never got accepted (stage `distill`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str | None
    origin: str  # where the row came from: `path:line` or `path#row`
    stage: Literal["input", "distill"]
    teacher: str | None
    reason: str  # stable snake_case code
    detail: str
    attempts: int = 0
    best_score: float | None = None
    raw: str | None = None  # the offending input, truncated, for malformed rows
    config_hash: str


REJECT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("origin", pa.string()),
        ("stage", pa.string()),
        ("teacher", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("attempts", pa.int32()),
        ("best_score", pa.float64()),
        ("raw", pa.string()),
        ("config_hash", pa.string()),
    ]
)


# ---- evaluation ---------------------------------------------------------------------------------------------------

# One generated response to a benchmark problem and its verdict (`jobs.evaluate`). `answer` is what the sample votes
# for in cons@k (`pipeline.eval_metrics.vote_key`, null when it commits to none); `correct` is score >= 1.0 with no
# failure; `finish_reason` is "stop", "length" (truncated at max tokens) or "error".
EVAL_SAMPLE_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("problem_id", pa.string()),
        ("sample", pa.int32()),  # 0..n-1
        ("category", pa.string()),
        ("response", pa.string()),  # the text as generated
        ("answer", pa.string()),
        ("score", pa.float64()),
        ("correct", pa.bool_()),
        ("verifier", pa.string()),
        ("verify_details", pa.string()),  # JSON
        ("failure", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("config_hash", pa.string()),
    ]
)


# ---- preprocessing ------------------------------------------------------------------------------------------------

# A query `jobs.preprocess` dropped: the query's own columns (null for a malformed row, whose `raw` holds it instead),
# then why. `matched_id` and `matched_source` name the kept representative of a duplicate, or the benchmark item a
# contaminated query matched; `similarity` is the estimated Jaccard (near duplicates), n-gram containment or cosine.
PREPROCESS_REJECT_SCHEMA = pa.schema(
    list(QUERY_SCHEMA)
    + [
        ("origin", pa.string()),
        ("reason", pa.string()),  # stable snake_case code
        ("detail", pa.string()),
        ("matched_id", pa.string()),
        ("matched_source", pa.string()),
        ("similarity", pa.float64()),
        ("raw", pa.string()),
        ("config_hash", pa.string()),
    ]
)
