"""The records distillery reads and writes, defined once: queries, samples, attempts and rejects.

Each record is a pydantic model (what code builds and validates); its Arrow schema (what lands in Parquet) is derived
from the model's fields (`arrow_schema`). Nested, per-category values (a query's reference, a verdict's details)
travel as JSON strings in Arrow, because their shape differs by category and Arrow wants one type per column.
Tables with no record of their own (evaluation samples, preprocess rejects) are defined as Arrow schemas here.
This module must never import Ray or vLLM.
"""

from __future__ import annotations

import hashlib
import json
import types
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo


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


# ---- Arrow schemas of records -------------------------------------------------------------------------------------


class ArrowType:
    """A field's stored Arrow type where it is not the default for its Python type: `Annotated[int, INT32]`."""

    def __init__(self, arrow_type: pa.DataType):
        self.arrow_type = arrow_type


INT32 = ArrowType(pa.int32())
_MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def arrow_schema(record: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a record's rows, a column per field in order: strings (enums and literals too), int64,
    float64 and bool; messages as a list of (role, content) structs; a dict as its JSON string. Every column is
    nullable, optional field or not."""
    return pa.schema([(name, _arrow_type(name, field)) for name, field in record.model_fields.items()])


def _arrow_type(name: str, field: FieldInfo) -> pa.DataType:
    for extra in field.metadata:
        if isinstance(extra, ArrowType):
            return extra.arrow_type
    kind = field.annotation
    if get_origin(kind) in (Union, types.UnionType):  # `X | None`
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if kind is str or get_origin(kind) is Literal or (isinstance(kind, type) and issubclass(kind, Enum)):
        return pa.string()
    if get_origin(kind) is dict:
        return pa.string()  # JSON
    if get_origin(kind) is list and get_args(kind) == (Message,):
        return _MESSAGES_TYPE
    for python, arrow in ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64())):
        if kind is python:
            return arrow
    raise TypeError(f"{name}: no Arrow type for {kind!r}")


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


QUERY_SCHEMA = arrow_schema(Query)  # `reference` and `metadata` as JSON (`Query.to_row`)


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
    attempts: Annotated[int, INT32]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    source: str | None = None
    config_hash: str


SAMPLE_SCHEMA = arrow_schema(Sample)


class Attempt(BaseModel):
    """One generated candidate and its verdict: the attempts log, a per-query difficulty signal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    teacher: str
    attempt: Annotated[int, INT32]  # 1-based attempt number
    candidate: Annotated[int, INT32]  # index among the `n` candidates of this attempt
    turn: Annotated[int, INT32]  # index of the user turn answered
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


ATTEMPT_SCHEMA = arrow_schema(Attempt)


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
    attempts: Annotated[int, INT32] = 0
    best_score: float | None = None
    raw: str | None = None  # the offending input, truncated, for malformed rows
    config_hash: str


REJECT_SCHEMA = arrow_schema(Reject)


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
