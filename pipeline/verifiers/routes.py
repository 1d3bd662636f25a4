"""Which verifier scores a query: the one route table.

Every decision about verifiers derives from `route`: whether a query is worth generating for (a query no verifier
can score is rejected before generation, with the reason), which verifier a checker actor uses, and which queries go
to the judge actors. Adding a category or a reference shape means one new row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pipeline.schema import Category, CodeReference, Query, StdioTests
from pipeline.verifiers.choice import is_choice_reference
from pipeline.verifiers.code import unusable_tests
from pipeline.verifiers.instructions import unknown_instructions


class Route(str, Enum):
    math = "math"
    code = "code"
    instructions = "instructions"
    choice = "choice"
    judge = "judge"


@dataclass(frozen=True)
class Available:
    """The verifiers a run has beyond the programs that always run: an LLM judge, and the code sandbox (enabled in
    the config, and checked to isolate on the verifier nodes when the pool starts)."""

    judge: bool
    code: bool


@dataclass(frozen=True)
class Routing:
    route: Route | None
    reason: str | None = None  # snake_case, when no verifier can score the query
    detail: str = ""


def route(query: Query, available: Available) -> Routing:
    category = query.category
    if category is Category.math:
        return Routing(Route.math)
    if category is Category.code:
        return _code_route(query, available)
    if category is Category.instruction_following:
        unknown = unknown_instructions(query.reference or {})
        if unknown:
            return Routing(None, "unknown_instruction", ", ".join(unknown))
        return Routing(Route.instructions)
    if category is Category.science and is_choice_reference(query):
        return Routing(Route.choice)
    # Chat, general and free-form science: only a model can grade them.
    return Routing(Route.judge) if available.judge else Routing(None, "no_judge_configured", category.value)


def _code_route(query: Query, available: Available) -> Routing:
    if not available.code:
        return Routing(None, "code_verification_disabled", "verifiers.code is false")
    reference = query.typed_reference()
    assert isinstance(reference, CodeReference)  # the schema guarantees it for code queries
    if reference.language == "cpp" and not isinstance(reference.tests, StdioTests):
        return Routing(None, "unsupported_tests", "C++ answers are checked with stdin/stdout tests only")
    problem = unusable_tests(reference)
    if problem:
        return Routing(None, "unusable_tests", problem)
    return Routing(Route.code)
