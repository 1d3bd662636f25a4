"""Checks a full response: the paper's structure first, then the verifier its route names.

Programs check math, code, instruction following and multiple choice here, in the CPU checker actors; the judge
(`pipeline.verifiers.judge`) runs in its own actors because it needs a model, behind the same structure check.
"""

from __future__ import annotations

from pipeline.config import VerifierConfig
from pipeline.response_format import ResponseFormat
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict, Verifier
from pipeline.verifiers.choice import ChoiceVerifier
from pipeline.verifiers.code import CodeVerifier
from pipeline.verifiers.instructions import InstructionVerifier
from pipeline.verifiers.math import MathVerifier
from pipeline.verifiers.routes import Route, Routing
from pipeline.verifiers.sandbox import Limits
from pipeline.verifiers.structure import check_structure

STRUCTURE_VERIFIER = "structure/1"
UNROUTED_VERIFIER = "none"


def check_structure_first(response: str, response_format: ResponseFormat) -> tuple[str, Verdict | None]:
    """The answer part, and the failing verdict when the response's structure is broken."""
    parsed = check_structure(response, response_format)
    if not parsed.ok:
        return "", Verdict(0.0, STRUCTURE_VERIFIER, {"response_chars": len(response)}, failure=parsed.failure)
    return parsed.answer, None


def unrouted(routing: Routing) -> Verdict:
    """The verdict on a response to a query that no verifier of this run can score."""
    return Verdict(0.0, UNROUTED_VERIFIER, {"detail": routing.detail}, failure=routing.reason)


class ResponseVerifier:
    """The programs, by route. The code sandbox starts (and checks that it isolates) only when code is enabled."""

    def __init__(self, config: VerifierConfig):
        self._verifiers: dict[Route, Verifier] = {
            Route.math: MathVerifier(config.math_timeout_s),
            Route.choice: ChoiceVerifier(),
            Route.instructions: InstructionVerifier(),
        }
        if config.code:
            limits = Limits(wall_s=config.code_wall_s, cpu_s=config.code_cpu_s, memory_mb=config.code_memory_mb)
            self._verifiers[Route.code] = CodeVerifier(config.code_max_tests, limits)

    def verify(self, query: Query, response: str, response_format: ResponseFormat, route: Route) -> Verdict:
        answer, broken = check_structure_first(response, response_format)
        if broken is not None:
            return broken
        return self._verifiers[route].verify(query, answer)

    def close(self) -> None:
        for verifier in self._verifiers.values():
            close = getattr(verifier, "close", None)
            if close is not None:
                close()
