"""Checks a full response: the paper's structure first, then the verifier for the query's category."""

from __future__ import annotations

from pipeline.config import VerifierConfig
from pipeline.response_format import ResponseFormat, parse_response
from pipeline.schema import Category, Query
from pipeline.verifiers.base import Verdict, Verifier
from pipeline.verifiers.math import MathVerifier

STRUCTURE_VERIFIER = "structure/1"
VERIFIED_CATEGORIES = frozenset({Category.math})


class ResponseVerifier:
    def __init__(self, config: VerifierConfig):
        self._by_category: dict[Category, Verifier] = {Category.math: MathVerifier(config.math_timeout_s)}
        assert self._by_category.keys() == VERIFIED_CATEGORIES

    def verify(self, query: Query, response: str, response_format: ResponseFormat) -> Verdict:
        parsed = parse_response(response, response_format)
        if not parsed.ok:
            return Verdict(0.0, STRUCTURE_VERIFIER, {"response_chars": len(response)}, failure=parsed.failure)
        verifier = self._by_category.get(query.category)
        if verifier is None:
            return Verdict(0.0, "none", {"category": query.category.value}, failure="no_verifier_for_category")
        return verifier.verify(query, parsed.answer)

    def close(self) -> None:
        for verifier in self._by_category.values():
            close = getattr(verifier, "close", None)
            if close is not None:
                close()
