"""Checks a full response: the paper's structure first, then the verifier for the query's category.

Programs check math, code, instruction following and multiple-choice science here; the rest goes to the LLM judge
(`pipeline.verifiers.judge`), which runs in its own actors because it needs a model.
"""

from __future__ import annotations

from pipeline.config import VerifierConfig
from pipeline.response_format import ResponseFormat
from pipeline.schema import Category, Query
from pipeline.verifiers.base import Verdict, Verifier
from pipeline.verifiers.choice import ChoiceVerifier, is_choice_reference
from pipeline.verifiers.code import CodeVerifier
from pipeline.verifiers.instructions import InstructionVerifier
from pipeline.verifiers.judge import needs_judge
from pipeline.verifiers.math import MathVerifier
from pipeline.verifiers.sandbox import Limits, sandbox_available
from pipeline.verifiers.structure import check_structure

STRUCTURE_VERIFIER = "structure/1"


def can_verify(query: Query, judge: bool) -> bool:
    """Whether a verifier exists for this query (`judge`: one is configured); generating for one that has none only
    burns engine time."""
    if query.category in (Category.math, Category.instruction_following):
        return True
    if query.category is Category.code:
        return sandbox_available() and (query.reference or {}).get("language", "python") in ("python", "cpp")
    return judge if needs_judge(query) else is_choice_reference(query)


def check_structure_first(response: str, response_format: ResponseFormat) -> tuple[str, Verdict | None]:
    """The answer part, and the failing verdict when the response's structure is broken."""
    parsed = check_structure(response, response_format)
    if not parsed.ok:
        return "", Verdict(0.0, STRUCTURE_VERIFIER, {"response_chars": len(response)}, failure=parsed.failure)
    return parsed.answer, None


class ResponseVerifier:
    def __init__(self, config: VerifierConfig):
        self._math = MathVerifier(config.math_timeout_s)
        self._choice = ChoiceVerifier()
        self._instructions = InstructionVerifier()
        limits = Limits(wall_s=config.code_wall_s, cpu_s=config.code_cpu_s, memory_mb=config.code_memory_mb)
        # Without root there is no sandbox: code answers are then scored 0 with that reason, never run unisolated.
        self._code = CodeVerifier(config.code_max_tests, limits) if sandbox_available() else None

    def _verifier_for(self, query: Query) -> Verifier | None:
        if query.category is Category.math:
            return self._math
        if query.category is Category.code:
            return self._code
        if query.category is Category.instruction_following:
            return self._instructions
        if query.category is Category.science and is_choice_reference(query):
            return self._choice
        return None

    def verify(self, query: Query, response: str, response_format: ResponseFormat) -> Verdict:
        answer, broken = check_structure_first(response, response_format)
        if broken is not None:
            return broken
        verifier = self._verifier_for(query)
        if verifier is None:
            failure = "sandbox_unavailable" if query.category is Category.code else "no_verifier_for_category"
            return Verdict(0.0, "none", {"category": query.category.value}, failure=failure)
        return verifier.verify(query, answer)

    def close(self) -> None:
        self._math.close()
        if self._code is not None:
            self._code.close()
